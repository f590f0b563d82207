"""Masking personal numbers: true positives, and look-alikes that must stay."""

from __future__ import annotations

import pytest

from storage.redact import id_card_valid, luhn_valid, redact

#: Well-known valid numbers: a published sample ID card and card-network test numbers.
ID_X = "11010519491231002X"
ID_DIGIT = "440301199001011234"
#: A valid ID number that happens to pass the Luhn check too.
ID_LUHN = "440306198506121129"
UNIONPAY = "6250941006528599"
VISA = "4111111111111111"
AMEX = "378282246310005"


def test_known_numbers_pass_their_checks() -> None:
    assert id_card_valid(ID_X) and id_card_valid(ID_X.lower())
    assert id_card_valid(ID_DIGIT)
    assert not id_card_valid("110105194912310021")  # wrong check digit
    assert not id_card_valid("440301199013011236")  # month 13
    assert luhn_valid(UNIONPAY) and luhn_valid(VISA) and luhn_valid(AMEX)
    assert not luhn_valid("6250941006528598")


@pytest.mark.parametrize(
    ("text", "kind", "raw"),
    [
        ("我电话13812345678有事打", "mobile", "13812345678"),
        ("手机 138 1234 5678", "mobile", "138 1234 5678"),
        ("手机138-1234-5678", "mobile", "138-1234-5678"),
        ("call +86 13812345678 please", "mobile", "+86 13812345678"),
        ("电话+86-138-1234-5678", "mobile", "+86-138-1234-5678"),
        ("8613912345678是我", "mobile", "8613912345678"),
        ("座机0755-23456789", "landline", "0755-23456789"),
        ("座机(0755)23456789找王经理", "landline", "(0755)23456789"),
        ("打020 8765432", "landline", "020 8765432"),
        ("office +86 755 23456789", "landline", "+86 755 23456789"),
        ("总机0755-23456789转123", "landline", "0755-23456789转123"),
        (f"身份证{ID_X}。", "id_card", ID_X),
        (f"身份证号{ID_X.lower()}", "id_card", ID_X.lower()),
        (f"ID {ID_DIGIT}", "id_card", ID_DIGIT),
        (f"卡号{UNIONPAY}", "bank_card", UNIONPAY),
        ("卡号 6250 9410 0652 8599 打给我", "bank_card", "6250 9410 0652 8599"),
        ("card 4111-1111-1111-1111", "bank_card", "4111-1111-1111-1111"),
        (f"amex {AMEX}", "bank_card", AMEX),
        ("邮箱 zhang.san+x@example.com.cn 联系", "email", "zhang.san+x@example.com.cn"),
        ("mail:li_si@163.com", "email", "li_si@163.com"),
    ],
)
def test_finds_and_masks(text: str, kind: str, raw: str) -> None:
    result = redact(text)
    assert [(f.kind, text[f.span[0] : f.span[1]]) for f in result.found] == [(kind, raw)]
    assert raw not in result.masked_text
    digits = "".join(c for c in raw if c.isdigit())
    if kind != "email":
        # No run of the number longer than its last 4 digits (plus a 3-digit prefix
        # for mobiles, 4 for ID cards) survives.
        assert digits not in "".join(c for c in result.masked_text if c.isdigit())
    before, after = text[: result.found[0].span[0]], text[result.found[0].span[1] :]
    assert result.masked_text.startswith(before) and result.masked_text.endswith(after)


@pytest.mark.parametrize(
    "text",
    [
        "欠我工资13800元",
        "押金3000块,2026-11-25搬走",
        "2026年11月25日下午3点",
        "订单号 1234567890123456 还没发货",  # 16 digits failing Luhn
        "订单20261125000123456789",  # 20 digits
        "单号110105194912310021",  # 18 digits, wrong ID checksum, fails Luhn too
        "快递单号 SF1234567890123",
        "工号 12345678",
        "1380 元 和 5678 元",
        "我的微信是 wx_abc123",
        "版本 v1.2.3, 房号 1203",
        "一共12个人,欠了3个月,每人8000",
        "价格 1,380,000 元",
        "时间 20261125 下午",
        "订单 2026112512345",  # 13 digits starting like a date, fails Luhn
    ],
)
def test_leaves_look_alikes(text: str) -> None:
    result = redact(text)
    assert result.found == []
    assert result.masked_text == text


def test_several_in_one_message_and_order() -> None:
    text = f"我叫张三,电话13812345678,身份证{ID_X},工资卡{UNIONPAY},欠薪13800元"
    result = redact(text)
    assert result.kinds == ["mobile", "id_card", "bank_card"]
    for raw in ("13812345678", ID_X, UNIONPAY):
        assert raw not in result.masked_text
    assert "13800元" in result.masked_text
    assert "138****5678" in result.masked_text
    assert "****8599" in result.masked_text


def test_id_card_is_not_taken_as_bank_card_or_phone() -> None:
    # A valid ID number may also pass Luhn by chance; it must be reported once, as an ID.
    assert luhn_valid(ID_LUHN)
    result = redact(f"证件{ID_LUHN}")
    assert result.kinds == ["id_card"]


def test_empty_and_plain_text() -> None:
    assert redact("").masked_text == ""
    assert redact("房东不退押金").found == []
