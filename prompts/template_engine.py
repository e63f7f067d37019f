"""A tiny, strict template engine for the prompt templates.

Placeholder forms (``name`` is a lowercase identifier, ``[a-z_][a-z0-9_]*``):

- ``{{name}}`` (spaces inside the braces allowed: ``{{ name }}``)
- ``<name/>`` (or ``<name />``)
- ``<name>``, the bare form, with one exception so that ordinary angle-bracket text survives:
  when the template also contains the closing tag ``</name>``, ``<name>`` is an element, not a
  placeholder (``<b>bold</b>`` stays as it is).

Anything else is literal text: ``a < b``, ``<Name>`` (uppercase), ``< name >`` (spaces),
``<a href="x">``, ``{{ Name }}``, ``<!-- comment -->``. Note that an unclosed ``<br>`` *is* a bare
placeholder, so it fails loudly as an unknown variable rather than vanishing.

Substitution is a single pass over the template: a substituted value is never scanned again, so a
value that contains ``{{x}}`` or ``<x/>`` stays literal (no template injection through values).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

_IDENT = r"[a-z_][a-z0-9_]*"
_PLACEHOLDER = re.compile(
    rf"\{{\{{\s*(?P<braces>{_IDENT})\s*\}}\}}"
    rf"|<(?P<selfclosing>{_IDENT})\s*/>"
    rf"|<(?P<bare>{_IDENT})>"
)
_CLOSING_TAG = re.compile(rf"</({_IDENT})\s*>")
_SECTION = re.compile(r"^## ([a-z0-9_.]+)[ \t]*$", re.MULTILINE)


class TemplateVariableError(ValueError):
    """A placeholder had no variable, or its variable was None."""

    def __init__(self, unknown: Iterable[str] = (), without_value: Iterable[str] = ()) -> None:
        self.unknown = tuple(sorted(unknown))
        self.without_value = tuple(sorted(without_value))
        self.names = tuple(sorted({*self.unknown, *self.without_value}))
        parts = []
        if self.unknown:
            parts.append("unknown template variable(s): " + ", ".join(self.unknown))
        if self.without_value:
            parts.append("template variable(s) set to None: " + ", ".join(self.without_value))
        super().__init__("; ".join(parts) or "template variable error")


def _name(match: re.Match[str], closed: set[str]) -> str | None:
    bare = match.group("bare")
    if bare is not None:
        return None if bare in closed else bare
    return match.group("braces") or match.group("selfclosing")


def placeholders(template: str) -> set[str]:
    """The variable names the template needs."""
    closed = set(_CLOSING_TAG.findall(template))
    return {name for m in _PLACEHOLDER.finditer(template) if (name := _name(m, closed))}


def render(template: str, variables: Mapping[str, str | None]) -> str:
    """Fill every placeholder; unknown or None variables raise TemplateVariableError.

    Extra variables that the template does not use are fine: callers share one mapping
    across several templates.
    """
    needed = placeholders(template)
    unknown = {n for n in needed if n not in variables}
    without_value = {n for n in needed - unknown if variables[n] is None}
    if unknown or without_value:
        raise TemplateVariableError(unknown, without_value)
    for name in needed:
        if not isinstance(variables[name], str):
            raise TypeError(f"template variable {name!r} must be a str, not {type(variables[name]).__name__}")

    closed = set(_CLOSING_TAG.findall(template))

    def fill(match: re.Match[str]) -> str:
        name = _name(match, closed)
        return match.group(0) if name is None else str(variables[name])

    # re.sub never rescans what a replacement function returns: that is the injection guard.
    return _PLACEHOLDER.sub(fill, template)


def parse_sections(text: str) -> dict[str, str]:
    """Split a template file into named sections, each starting with a line ``## name``.

    Text before the first section is a free-form preamble (documentation) and is dropped.
    """
    parts = _SECTION.split(text)
    sections: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in sections:
            raise ValueError(f"duplicate template section {name!r}")
        sections[name] = body.strip()
    return sections
