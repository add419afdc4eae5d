"""Templates: `template: "{First Name} {Last Name}"`, several columns' cells in one text.

The template is parsed once, when the mapping is loaded, into a positional
``str.format`` string and its columns; each row then costs one ``format``.
"""

from __future__ import annotations

from typing import Any

from bulksend.mapping.getters import Finish, Getter, Values
from bulksend.mapping.problems import Problem, quote


def parse_template(template: str) -> tuple[str, tuple[str, ...]]:
    """Turn "{First Name} {Last Name}" into a positional str.format string and its columns.

    `{{` and `}}` are literal braces; anything between single braces is a column
    name (trimmed), so names with ":" or "!" work, unlike str.format's own fields.
    Raises Problem (with no node) when a brace is unpaired or a placeholder empty.
    """
    out: list[str] = []
    names: list[str] = []
    index = 0
    length = len(template)
    while index < length:
        char = template[index]
        if char == "{":
            if template.startswith("{{", index):
                out.append("{{")
                index += 2
                continue
            end = template.find("}", index + 1)
            if end < 0:
                raise Problem('has a "{" that is never closed (write "{{" for a brace)')
            name = template[index + 1 : end].strip()
            if "{" in name:
                raise Problem('has a "{" inside a placeholder')
            if not name:
                raise Problem('has an empty placeholder "{}"')
            out.append("{" + str(len(names)) + "}")
            names.append(name)
            index = end + 1
        elif char == "}":
            if template.startswith("}}", index):
                out.append("}}")
                index += 2
                continue
            raise Problem('has a "}" without "{" (write "}}" for a brace)')
        else:
            out.append(char)
            index += 1
    return "".join(out), tuple(names)


def template_getter(template: str, fmt: str, columns: tuple[str, ...], *, strip: bool,
                    then: Finish) -> Getter:
    """The template's text for a row (``fmt`` and ``columns`` from parse_template),
    stripped, then finished by ``then``; the cells are stripped first if ``strip``."""
    named = ", ".join(quote(column) for column in columns)
    empty = f"template {quote(template)} is empty (required)" + (
        f"; columns {named} are empty" if columns else ""
    )
    finish = then.closure(empty)

    def get(values: Values) -> Any:
        if strip:
            cells = [values.get(column, "").strip() for column in columns]
        else:
            cells = [values.get(column, "") for column in columns]
        return finish(fmt.format(*cells).strip())

    return get
