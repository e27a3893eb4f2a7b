"""A message (analysis.messages) rendered the way each channel kind shows it best, with that
channel's escaping applied to every value (all of them may come from a hostile node):

- Slack: Block Kit (a header and a section in plain text, the link in mrkdwn) and a fallback text;
  `&`, `<` and `>` escaped so no `<!channel>`, `<@U…>` or link can form, and `@channel`,
  `@everyone` and `@here` broken with a zero-width space.
- Discord: an embed; markdown escaped with backslashes, mentions broken too, and
  `allowed_mentions: {"parse": []}`, so nobody is pinged whatever the text says.
- Telegram: `parse_mode=HTML`, every value HTML-escaped.
- Email: plain text; the subject is one line (no CR or LF can add a header).
"""

from __future__ import annotations

import html
import re

from .messages import Message, payload
from .models import NotificationEvent, Severity

_SLACK_SPECIAL = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})
_MENTION = re.compile(r"@(?=(everyone|here|channel)\b)", re.IGNORECASE)
# Discord markdown, quotes, headings, lists, links, spoilers and <@id> / <:emoji:id> mentions: a
# backslash before any of these shows it as it is.
_DISCORD_SPECIAL = re.compile(r"([\\*_~`|<>#\-\[\]()])")

# Sidebar colours: critical red, warning amber, resolved green.
_COLOURS = {Severity.CRITICAL: 0xD93025, Severity.WARNING: 0xF29900, Severity.INFO: 0x1A73E8}
_RESOLVED_COLOUR = 0x188038


def break_mentions(value: str) -> str:
    return _MENTION.sub("@\u200b", value)


def slack_text(value: str) -> str:
    """Slack's escaping: <!channel>, <@U123> and links all start with '<'; plain @channel too."""
    return break_mentions(value.translate(_SLACK_SPECIAL))


def slack_cut(value: str, limit: int) -> str:
    """`value` escaped for Slack in at most `limit` characters, cut before escaping so no `&lt;`
    is split in half."""
    out = slack_text(value)
    keep = len(value)
    while len(out) > limit and keep > 0:
        keep -= max(1, (len(out) - limit) // 5)  # an escape is at most 5 characters
        out = slack_text(value[:keep]).rstrip() + "…"
    return out


def discord_text(value: str) -> str:
    return break_mentions(_DISCORD_SPECIAL.sub(r"\\\1", value))


def telegram_text(value: str) -> str:
    return html.escape(value, quote=True)


def slack(m: Message) -> dict:
    body_lines = [m.detail, m.heights]
    blocks: list[dict] = [
        # A header holds at most 150 characters of plain text.
        {"type": "header", "text": {"type": "plain_text", "text": slack_cut(m.subject, 150)}},
        {"type": "section", "text": {"type": "plain_text", "text": slack_text("\n".join(filter(None, body_lines)))}},
    ]
    if m.link:
        # The link is ctop's own (CTOP_BASE_URL and a path), escaped all the same.
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": f"<{slack_text(m.link)}|Open alert {m.alert_id}>"}}
        )
    return {"text": slack_text(m.subject), "blocks": blocks}


def discord(m: Message) -> dict:
    colour = _RESOLVED_COLOUR if m.event == NotificationEvent.RESOLVED else _COLOURS.get(m.severity, 0)
    fields = [
        {"name": "Chain", "value": discord_text(m.chain), "inline": True},
        {"name": "Severity", "value": m.mark.lower(), "inline": True},
    ]
    if m.validator:
        fields.insert(1, {"name": "Validator", "value": discord_text(m.validator), "inline": True})
    if m.heights:
        fields.append({"name": "Heights", "value": discord_text(m.heights), "inline": False})
    embed: dict = {
        "title": discord_text(m.subject)[:256],
        "description": discord_text(m.detail)[:4096],
        "color": colour,
        "fields": fields,
    }
    if m.link:
        embed["url"] = m.link
    # Discord's own switch: no @everyone, @here, user or role ping, whatever the text.
    return {"content": discord_text(m.subject)[:2000], "embeds": [embed], "allowed_mentions": {"parse": []}}


def telegram(m: Message) -> dict:
    parts = [f"<b>{telegram_text(m.subject)}</b>", telegram_text(m.detail)]
    if m.heights:
        parts.append(telegram_text(m.heights))
    if m.link:
        parts.append(f'<a href="{telegram_text(m.link)}">Open alert {m.alert_id}</a>')
    return {"text": "\n".join(parts), "parse_mode": "HTML", "link_preview_options": {"is_disabled": True}}


def email(m: Message) -> tuple[str, str]:
    """(subject, body). Every value is one line already, so the subject cannot carry a header."""
    lines = [*m.lines(), ""]
    for key, value in payload(m).items():
        if value is not None and key not in ("text", "summary"):
            lines.append(f"{key.replace('_', ' ')}: {value}")
    return m.subject[:200], "\n".join(lines) + "\n"


def pagerduty(m: Message, routing_key: str) -> dict:
    body: dict = {
        "routing_key": routing_key,
        # An escalation triggers again: PagerDuty adds it to the same incident (one dedup key).
        "event_action": "resolve" if m.event == NotificationEvent.RESOLVED else "trigger",
        "dedup_key": f"ctop-{m.alert_id}",
        "payload": {
            "summary": m.subject[:1024],
            "source": m.chain,
            "severity": "critical" if m.severity >= Severity.CRITICAL else "warning",
            "custom_details": payload(m),
        },
    }
    if m.link:
        body["links"] = [{"href": m.link, "text": f"ctop alert {m.alert_id}"}]
    return body
