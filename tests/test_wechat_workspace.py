"""Issue 15: a mediator working a WeChat resident's case in the web workspace reaches the
resident through WeChat's customer-service API (claim notice, reply, rating request),
through the same desk service and output port as every other front end."""

from __future__ import annotations

from storage.models import CaseStatus
from tests.test_wechat_channel import CUSTOM, Harness, new_msg_id, text_xml, wx  # noqa: F401
from tests.workspace_support import add_user, file_chat_case, sign_in, token_from


async def test_workspace_reply_reaches_a_wechat_resident(wx: Harness) -> None:  # noqa: F811
    who = "o-workspace-1"
    await wx.say(text_xml(who, "你好", new_msg_id()))  # inside WeChat's 48-hour window
    reference = await file_chat_case(wx.store, channel="wechat", chat_id=who)
    await add_user(wx.store, "li", "xixiang")
    assert (await sign_in(wx.client, "li")).status == 303
    csrf = await token_from(wx.client, f"/desk/cases/{reference}")
    before = len(wx.api.sent(CUSTOM))
    claimed = await wx.client.post(
        f"/desk/cases/{reference}/claim", data={"csrf": csrf}, allow_redirects=False
    )
    assert claimed.status == 303
    replied = await wx.client.post(
        f"/desk/cases/{reference}/reply",
        data={"csrf": csrf, "text": "您好,我是西乡的调解员,明天上午给您打电话。"},
        allow_redirects=False,
    )
    assert replied.status == 303
    sent = [c.body for c in wx.api.sent(CUSTOM)[before:]]
    assert all(body["touser"] == who for body in sent)
    texts = [body["text"]["content"] for body in sent if body["msgtype"] == "text"]
    assert any("调解员li" in text for text in texts)  # told who took the case
    assert any("明天上午给您打电话" in text for text in texts)
    # Resolved from the workspace: the rating request arrives as a tappable menu.
    for status in (CaseStatus.IN_MEDIATION.value, CaseStatus.RESOLVED.value):
        changed = await wx.client.post(
            f"/desk/cases/{reference}/status",
            data={"csrf": csrf, "status": status},
            allow_redirects=False,
        )
        assert changed.status == 303
    last = wx.api.sent(CUSTOM)[-1].body
    assert last["msgtype"] == "msgmenu" and reference in str(last)
