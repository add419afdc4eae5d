"""Column headers of contact exports, matched to Collect's contact fields (issue 15).

CRMs and spreadsheets export in the user's language. ``bulksend init`` matches
a header to a field when, once compared (accents dropped, case folded, only
letters and digits kept), it is one of the names below: English, French,
German, Spanish and Italian, the languages of Collect's users and of the
exports they bring (Collect's own import dialog and Salesforce's Data Loader
match columns the same way: by name, then by content).

Roles: ``email``, ``firstName``, ``lastName``, ``company`` (the contact's
fields, collect-api.md §4), ``items`` (documents asked for), ``dueDate``, and
two kinds of "name" column: ``fullName`` (a whole name) and ``name`` (a word
that is the surname beside a first-name column, the whole name without one:
German ``Name``, French ``Nom``).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

__all__ = ["ROLES", "compared", "role_of"]

_VOCABULARY: Final[dict[str, tuple[str, ...]]] = {
    "email": (
        "email", "e-mail", "mail", "email address", "e-mail address", "mail address",
        "contact email", "work email", "business email", "primary email", "email 1",
        "e-mail 1 - value",  # Google Contacts: the first (primary) kind of address
        "courriel", "adresse e-mail", "adresse email", "adresse mail", "adresse électronique",
        "adresse courriel", "mél", "e-mail-adresse", "emailadresse", "mailadresse",
        "correo", "correo electrónico", "dirección de correo", "dirección de correo electrónico",
        "dirección de email", "email de contacto",
        "posta elettronica", "indirizzo email", "indirizzo e-mail", "indirizzo di posta elettronica",
        "indirizzo mail",
    ),
    "firstName": (
        "first name", "firstname", "first", "given name", "forename", "contact first name",
        "prénom", "vorname", "rufname", "nombre", "nombre de pila", "nome", "primo nome",
    ),
    "lastName": (
        "last name", "lastname", "last", "surname", "family name", "contact last name",
        "nom de famille", "nom de naissance", "nachname", "familienname", "zuname",
        "apellido", "apellidos", "primer apellido", "cognome",
    ),
    "fullName": (
        "full name", "contact name", "nom complet", "nom et prénom", "prénom et nom",
        "nom prénom", "prénom nom", "vollständiger name", "vor- und nachname", "nombre completo",
        "nombre y apellidos", "nome completo", "nome e cognome", "nominativo",
    ),
    "name": ("name", "nom"),
    "company": (
        "company", "company name", "organisation", "organization", "organisation name",
        "organization name", "business", "business name", "employer", "account name",
        "société", "nom de la société", "entreprise", "nom de l'entreprise", "raison sociale",
        "firma", "firmenname", "unternehmen", "arbeitgeber",
        "empresa", "compañía", "nombre de la empresa", "razón social",
        "azienda", "società", "ragione sociale", "ditta", "nome azienda",
    ),
    "items": (
        "documents", "items", "documents requested", "requested documents", "document", "elements",
        "pièces", "pièces justificatives", "pièces demandées", "documents demandés", "justificatifs",
        "dokumente", "unterlagen", "angeforderte dokumente", "documentos", "documentación",
        "documentos solicitados", "documenti", "documenti richiesti",
    ),
    "dueDate": (
        "due", "due date", "deadline", "due by", "due on", "échéance", "date d'échéance",
        "date limite", "date butoir", "fällig", "fällig am", "fälligkeit", "fälligkeitsdatum", "frist",
        "abgabefrist", "fecha límite", "vencimiento", "fecha de vencimiento", "plazo", "scadenza",
        "data di scadenza", "data scadenza", "termine",
    ),
}
ROLES: Final = tuple(_VOCABULARY)


def compared(header: str) -> str:
    """A header as compared: accents dropped, case folded, letters and digits only
    (``Adresse e-mail`` → ``adresseemail``, ``Prénom`` → ``prenom``)."""
    decomposed = unicodedata.normalize("NFKD", header.casefold())
    return re.sub(r"[\W_]+", "", "".join(c for c in decomposed if not unicodedata.combining(c)))


_BY_COMPARED: Final[dict[str, str]] = {compared(name): role for role, names in _VOCABULARY.items()
                                       for name in names}


def role_of(header: str) -> str | None:
    """The role a header names (one of ROLES), or None when it names none."""
    return _BY_COMPARED.get(compared(header))
