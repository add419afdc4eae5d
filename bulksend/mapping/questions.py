"""Questions: what ``bulksend init`` could not decide, written into the mapping to be answered (issue 24).

bulksend never guesses where the evidence does not decide (PRODUCT.md, step 0).
``init`` then writes the question into the mapping it makes, in a form that a
person answers by deleting what does not apply, and that ``validate`` and
``send`` refuse (exit 2) until it is answered:

* the campaign, when ``--campaign`` was not given: ``campaignId: {value: YOUR_CAMPAIGN_ID}``;
* which of several columns holds the contacts' addresses: ``email: "Email or Courriel"``;
* the order of day and month, when every date reads both ways, or rows read
  only one way and others only the other: ``format: "%d/%m/%Y or %m/%d/%Y"``.

A question is "A or B" where every choice is itself a valid answer (a column of
the file, a date format) and the whole is not: a column really named
"Yes or No" is a column, not a question.
"""

from __future__ import annotations

from typing import Final

from bulksend.common.errors import MappingError

__all__ = ["OR", "PLACEHOLDER", "QuestionsError", "choices", "question"]

PLACEHOLDER: Final = "YOUR_CAMPAIGN_ID"  # the campaign id init writes when it was not given
OR: Final = " or "  # between the choices of a question


class QuestionsError(MappingError):
    """A mapping whose only problems are questions ``init`` left in it (and the
    campaign placeholder): ``init`` writes it; ``validate`` and ``send`` refuse it."""


def choices(text: str) -> list[str]:
    """The choices of a question "A or B [or C]", each trimmed; [] when ``text`` is not one."""
    if OR not in text:
        return []
    found = [part.strip() for part in text.split(OR)]
    return found if len(found) > 1 and all(found) else []


def question(options: list[str]) -> str:
    """The question whose choices are ``options``: "A or B"."""
    return OR.join(options)
