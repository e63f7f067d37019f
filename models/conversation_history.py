"""Conversation history in both shapes clients use, and a lead's history as stored.

Two shapes, converted both ways without losing an utterance, its speaker or its order:
- turns: [{"user": "...", "agent": "..."}] (a key left out: that side said nothing in the turn;
  {"system": "..."} carries a system note);
- messages: [{"role": "user" | "assistant" | "system", "content": "..."}].
messages -> turns -> messages gives back the same list. turns -> messages -> turns gives the
canonical turns: a lone user turn followed by a lone agent turn become one turn.
"""

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from models.call_job import utcnow
from models.domain import ChatMessage, ConversationThread, Lead
from models.enums import Channel, DeliveryStatus, MessageRole, SenderType

Message = dict[str, str]
Turn = dict[str, str]

TURN_KEYS = ("system", "user", "agent")  # the order a turn's parts are said in
ROLE_OF_TURN_KEY = {"system": "system", "user": "user", "agent": "assistant"}
ROLES = frozenset(ROLE_OF_TURN_KEY.values())
# How a {role, content} message is stored: the model's role and the conversation's sender.
STORED_AS: Mapping[str, tuple[MessageRole, SenderType]] = {
    "user": (MessageRole.USER, SenderType.LEAD),
    "assistant": (MessageRole.MODEL, SenderType.AGENT),
    "system": (MessageRole.SYSTEM, SenderType.SYSTEM),
}
ROLE_OF_SENDER = {
    SenderType.LEAD: "user",
    SenderType.AGENT: "assistant",
    SenderType.SYSTEM: "system",
    # To the model, the business's side of the conversation is one voice, human or not.
    SenderType.HUMAN: "assistant",
}
HISTORY_FOR_CONTEXT = 50


class HistoryFormatError(ValueError):
    pass


def turns_to_messages(turns: Iterable[Mapping[str, Any]], first_index: int = 0) -> list[Message]:
    messages = []
    for index, turn in enumerate(turns, first_index):
        unknown = set(turn) - set(TURN_KEYS)
        if unknown or not turn:
            raise HistoryFormatError(
                f"history[{index}]: a turn has only the keys user, agent, system (got {sorted(unknown)[:3]})"
            )
        for key in TURN_KEYS:
            if key in turn:
                messages.append({"role": ROLE_OF_TURN_KEY[key], "content": _text(turn[key], index, key)})
    return messages


def messages_to_turns(messages: Iterable[Mapping[str, Any]]) -> list[Turn]:
    turns: list[Turn] = []
    for index, message in enumerate(messages):
        role, content = message.get("role"), _text(message.get("content"), index, "content")
        if role == "user":
            turns.append({"user": content})
        elif role == "assistant":
            if turns and set(turns[-1]) == {"user"}:
                turns[-1]["agent"] = content
            else:
                turns.append({"agent": content})
        elif role == "system":
            turns.append({"system": content})
        else:
            raise HistoryFormatError(f"history[{index}].role: {str(role)[:20]!r} is not user, assistant or system")
    return turns


def as_messages(history: Sequence[Mapping[str, Any]]) -> list[Message]:
    """Either shape (or a mix, item by item) as {role, content} messages."""
    messages: list[Message] = []
    for index, item in enumerate(history):
        if not isinstance(item, Mapping):
            raise HistoryFormatError(f"history[{index}]: expected an object")
        if "role" in item:
            if set(item) - {"role", "content"}:
                raise HistoryFormatError(f"history[{index}]: a message has only the keys role and content")
            if item["role"] not in ROLES:
                raise HistoryFormatError(f"history[{index}].role: {str(item['role'])[:20]!r} is not user, assistant or system")
            messages.append({"role": item["role"], "content": _text(item.get("content"), index, "content")})
        else:
            messages.extend(turns_to_messages([item], first_index=index))
    return messages


def _text(value: Any, index: int, key: str) -> str:
    if not isinstance(value, str):
        raise HistoryFormatError(f"history[{index}].{key}: expected text")
    return value


# --- the lead's stored history ---------------------------------------------------------------------


def thread_for(db: Session, lead: Lead, channel: Channel) -> ConversationThread:
    """The lead's one thread on a channel, created on first use (safely under concurrency)."""
    if lead.id is None:
        raise ValueError("the lead must be stored before it has threads")
    query = select(ConversationThread).where(ConversationThread.lead_id == lead.id, ConversationThread.channel == channel)
    thread = db.exec(query).first()
    if thread is not None:
        return thread
    try:
        with db.begin_nested():
            thread = ConversationThread(workspace_id=lead.workspace_id, lead_id=lead.id, channel=channel)
            db.add(thread)
    except IntegrityError:
        thread = db.exec(query).one()
    return thread


def new_message(thread: ConversationThread, message: Mapping[str, str], **fields: Any) -> ChatMessage:
    if thread.id is None:
        raise ValueError("the thread must be stored before messages are added to it")
    role, sender = STORED_AS[message["role"]]
    return ChatMessage(
        thread_id=thread.id, lead_id=thread.lead_id, role=role, sender_type=sender, content=message["content"], **fields
    )


def as_message(stored: ChatMessage) -> Message:
    return {"role": ROLE_OF_SENDER[stored.sender_type], "content": stored.content}


def stored_messages(db: Session, lead_id: int, limit: int | None = None) -> list[ChatMessage]:
    """The lead's messages on every channel, oldest first (the newest `limit` of them)."""
    query = (
        select(ChatMessage)
        .where(ChatMessage.lead_id == lead_id)
        .order_by(col(ChatMessage.created_at).desc(), col(ChatMessage.id).desc())
    )
    if limit is not None:
        query = query.limit(limit)
    return list(reversed(db.exec(query).all()))


def history_for_context(db: Session, lead_id: int) -> list[Message]:
    """What the next call's context is given: earlier calls and messages, user/assistant only."""
    return [m for m in map(as_message, stored_messages(db, lead_id, HISTORY_FOR_CONTEXT)) if m["role"] != "system"]


def record_outgoing_text(
    db: Session,
    lead: Lead,
    body: str,
    message_sid: str | None,
    *,
    sender: SenderType = SenderType.AGENT,
    delivery_status: DeliveryStatus = DeliveryStatus.QUEUED,
    channel: Channel = Channel.SMS,
    **fields: Any,
) -> ChatMessage:
    """A text we sent the lead, in its SMS thread (or `channel`'s; opened here on first use), with its delivery status.

    Every outgoing text goes through here (the agent's replies, a person's, the missed-call
    text-back, the follow-up after a call), so the thread is the whole conversation.
    """
    thread = thread_for(db, lead, channel)
    fields.setdefault("external_platform", "twilio" if message_sid else None)
    fields.setdefault("sent_at", utcnow())
    message = new_message(
        thread, {"role": "assistant", "content": body}, delivery_status=delivery_status, external_message_id=message_sid, **fields
    )
    message.sender_type = sender
    db.add(message)
    return message
