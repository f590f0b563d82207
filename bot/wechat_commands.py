"""``tiaojie wechat …``: set up the district's WeChat Official Account.

``tiaojie wechat menu FILE.yml`` sets the account's custom menu from a YAML file
(``bot/wechat_menu.yml`` is the default one). The file is checked against WeChat's
rules before anything is sent, so a typo ends with one line naming the button, not
with an error code from WeChat.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from rich.console import Console

from bot.i18n import t

if TYPE_CHECKING:
    from bot.runtime import Store
    from bot.settings import Settings

wechat_app = typer.Typer(help="The WeChat Official Account (公众号).", no_args_is_help=True)

out = Console()
err = Console(stderr=True)
DEFAULT_MENU = Path(__file__).with_name("wechat_menu.yml")
#: The menu keys the channel answers (bot.channels.wechat.MENU_COMMANDS; a test keeps
#: them equal). Not imported from there so that ``tiaojie --help`` stays quick.
MENU_COMMANDS = frozenset({"start", "status", "human", "help", "new", "cancel"})


class MenuFileError(ValueError):
    """The menu file breaks one of WeChat's rules; ``str()`` says which and where."""


class _Button(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    key: str | None = None
    url: str | None = Field(default=None, pattern=r"^https?://\S+$")

    @model_validator(mode="after")
    def _one_action(self) -> _Button:
        if (self.key is None) == (self.url is None):
            raise ValueError("needs exactly one of 'key' or 'url'")
        if self.key is not None and self.key not in MENU_COMMANDS:
            raise ValueError(f"key must be one of {', '.join(sorted(MENU_COMMANDS))}")
        if len(self.name.encode("utf-8")) > 60:
            raise ValueError("name longer than 60 bytes (20 Chinese characters)")
        return self


class _TopButton(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    key: str | None = None
    url: str | None = Field(default=None, pattern=r"^https?://\S+$")
    sub_button: list[_Button] | None = Field(default=None, min_length=1, max_length=5)

    @model_validator(mode="after")
    def _one_action(self) -> _TopButton:
        actions = [self.key is not None, self.url is not None, self.sub_button is not None]
        if sum(actions) != 1:
            raise ValueError("needs exactly one of 'key', 'url' or 'sub_button'")
        if self.sub_button is None:
            _Button(name=self.name, key=self.key, url=self.url)
        if len(self.name.encode("utf-8")) > 16:
            raise ValueError("name longer than 16 bytes (5 Chinese characters)")
        return self


class _Menu(BaseModel):
    model_config = ConfigDict(extra="forbid")
    button: list[_TopButton] = Field(min_length=1, max_length=3)


def _entry(button: _Button | _TopButton) -> dict[str, Any]:
    if isinstance(button, _TopButton) and button.sub_button is not None:
        return {"name": button.name, "sub_button": [_entry(b) for b in button.sub_button]}
    if button.key is not None:
        return {"type": "click", "name": button.name, "key": button.key}
    return {"type": "view", "name": button.name, "url": button.url}


def menu_payload(path: Path) -> dict[str, Any]:
    """The body of WeChat's ``menu/create`` for a menu file; :class:`MenuFileError` if wrong."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise MenuFileError(f"{path}: cannot read file ({error.strerror})") from None
    except yaml.YAMLError as error:
        raise MenuFileError(f"{path}: not valid YAML ({error})") from None
    try:
        menu = _Menu.model_validate(document)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        message = str(first["msg"]).removeprefix("Value error, ")
        raise MenuFileError(f"{path}: {where}: {message}") from None
    return {"button": [_entry(b) for b in menu.button]}


async def set_menu(settings: Settings, store: Store, payload: dict[str, Any]) -> None:
    """Send the menu with the account's shared access token."""
    from bot.channels.wechat_api import WeChatApi

    assert settings.wechat_app_id is not None and settings.wechat_app_secret is not None
    api = WeChatApi(
        None,
        store,
        base_url=settings.wechat_api_base_url,
        app_id=settings.wechat_app_id,
        app_secret=settings.wechat_app_secret.get_secret_value(),
    )
    await api.start()
    try:
        await api.create_menu(payload)
    finally:
        await api.close()


@wechat_app.command("menu")
def menu(
    file: Annotated[Path, typer.Argument(help="Menu YAML file")] = DEFAULT_MENU,
) -> None:
    """Set the Official Account's custom menu from FILE (default: bot/wechat_menu.yml)."""
    from bot.channels.wechat_api import WeChatApiError
    from bot.cli import settings_or_exit, with_store

    settings = settings_or_exit()
    language = settings.language
    if not settings.wechat_enabled:
        err.print(t("wechat.not_configured", language), markup=False)
        raise typer.Exit(2)
    try:
        payload = menu_payload(file)
    except MenuFileError as error:
        err.print(t("wechat.menu_file_error", language, error=error), markup=False)
        raise typer.Exit(2) from None
    try:
        with_store(settings, lambda store: set_menu(settings, store, payload))
    except WeChatApiError as error:
        err.print(t("wechat.api_error", language, error=error), markup=False)
        raise typer.Exit(1) from None
    count = sum(len(b.get("sub_button") or [b]) for b in payload["button"])
    out.print(t("wechat.menu_set", language, count=count), markup=False)
