"""Secret scrubbing for every string that leaves the process.

Error strings of coding agents carry runtime dumps: command lines, URLs,
environment fragments.  :class:`Redactor` replaces the secret formats that are
common there (provider API keys, bearer and basic credentials, passwords in
URLs, private keys, cloud access keys, ``password=...`` pairs) with
``[REDACTED]``, then applies the host's own redaction hook.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from typing import Any, Final

__all__ = ["REDACTED", "Redactor", "SECRET_PATTERNS"]

_logger = logging.getLogger(__name__)

REDACTED: Final = "[REDACTED]"

# Each pattern matches one secret format, and runs only on text that contains
# one of its literals in lower case: most strings of a snapshot (identifiers,
# UUIDs, paths) contain none, and a substring test costs far less than a regex.
# Where a pattern has a group named "keep", that part of the match (a key name,
# a URL's user) is kept.  Bearer and
# basic credentials skip a plain lowercase word ("Basic authentication failed"),
# which an encoded credential of eight or more characters practically never is.
SECRET_PATTERNS: Final[tuple[tuple[str, tuple[str, ...], re.Pattern[str]], ...]] = tuple(
    (name, literals, re.compile(pattern))
    for name, literals, pattern in (
        (
            "private key block",
            ("private key",),
            r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY-----[\s\S]*?(?:-----END[A-Z0-9 ]*PRIVATE KEY-----|$)",
        ),
        ("url credentials", ("://",), r"(?P<keep>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@]*:)[^\s@/]+(?=@)"),
        (
            "bearer credentials",
            ("bearer",),
            r"(?P<keep>\b(?i:bearer)\s+)(?![A-Za-z][a-z]+\b)[A-Za-z0-9._~+/=-]{8,}",
        ),
        (
            "basic credentials",
            ("basic",),
            r"(?P<keep>\b(?i:basic)\s+)(?![A-Za-z][a-z]+\b)[A-Za-z0-9+/]{8,}={0,2}",
        ),
        ("json web token", ("eyj",), r"\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]+"),
        ("anthropic api key", ("sk-ant-",), r"\bsk-ant-[A-Za-z0-9_-]{20,}"),
        ("openai api key", ("sk-",), r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}"),
        ("github token", ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"), r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{22,})"),
        ("gitlab token", ("glpat-",), r"\bglpat-[A-Za-z0-9_-]{20,}"),
        ("slack token", ("xox",), r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),
        ("slack webhook", ("hooks.slack.com",), r"https://hooks\.slack\.com/services/[A-Za-z0-9/]+"),
        ("aws access key id", ("akia", "asia", "agpa", "aida", "aroa"), r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA)[A-Z0-9]{16}\b"),
        ("google api key", ("aiza",), r"\bAIza[0-9A-Za-z_-]{35}"),
        ("stripe key", ("_live_", "_test_"), r"\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}"),
        ("linear api key", ("lin_api_", "lin_oauth_"), r"\blin_(?:api|oauth)_[A-Za-z0-9]{30,}"),
        ("hugging face token", ("hf_",), r"\bhf_[A-Za-z0-9]{30,}"),
        ("npm token", ("npm_",), r"\bnpm_[A-Za-z0-9]{36}\b"),
        ("pypi token", ("pypi-",), r"\bpypi-[A-Za-z0-9_-]{50,}"),
        ("sendgrid key", ("sg.",), r"\bSG\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}"),
        ("shopify token", ("shpat_", "shpca_", "shppa_", "shpss_"), r"\bshp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}\b"),
        ("honeycomb key", ("hc",), r"\bhc[a-z]{2}k_[A-Za-z0-9]{20,}"),
        # Bot API URLs put the token right after "bot": https://api.telegram.org/bot<token>/getMe
        ("telegram bot token", (":aa",), r"(?:\b|(?<=/bot))\d{8,10}:AA[A-Za-z0-9_-]{33}\b"),
        ("digitalocean token", ("_v1_",), r"\bdo[opr]_v1_[a-f0-9]{64}\b"),
        ("databricks token", ("dapi",), r"\bdapi[a-f0-9]{32}(?:-\d+)?\b"),
        (
            "command-line user and password",
            ("-u", "--user"),
            r"(?P<keep>(?:^|\s)(?:-u|--user)(?:\s+|=)[^\s:@/]+:)[^\s@]+",
        ),
        ("azure connection key", ("accountkey=", "sharedaccesskey=", "sig="), r"(?i)(?P<keep>\b(?:AccountKey|SharedAccessKey|sig)=)[^;&\s\"']+"),
        # A key may be quoted, also with escaped quotes as in the Elixir maps that
        # error dumps inspect twice: \"password\" => \"...\". The pattern tries "=>"
        # before "=" so that it never takes the arrow's ">" for the value.
        (
            "secret assignment",
            ("password", "passwd", "pwd", "secret", "token", "api_key", "api-key", "apikey", "access_key", "access-key", "accesskey", "private_key", "private-key", "privatekey", "credential", "auth"),
            r"(?i)(?P<keep>\b[\w.-]*(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key"
            r"|private[_-]?key|credentials?|auth)(?:\\?[\"'])?\s*(?:=>|=|:)\s*)"
            # A value that an earlier pattern already replaced stays as it is.
            r"(?!\[REDACTED\])(?:\\\"(?:[^\"\\]|\\[^\"])*\\\"|\"[^\"]*\"|'[^']*'|[^\s,;&}\]\"']+)",
        ),
    )
)

# Secrets need at least a few characters; shorter strings are returned as they are.
_MIN_SECRET_LENGTH: Final = 8
# Results are cached in two generations: when the current one fills, it becomes
# the previous one, so the strings of the latest snapshots always stay cached.
_MIN_GENERATION_SIZE: Final = 512


def _replace(match: re.Match[str]) -> str:
    keep = match.groupdict().get("keep")
    return f"{keep}{REDACTED}" if keep else REDACTED


class Redactor:
    """Scrubs secrets from strings, then applies the host's redaction hook.

    Snapshots repeat most of their strings (identifiers, paths, errors of the
    retry queue), so results are cached.  The cache keeps two generations of at
    least twice the strings of one payload (see :meth:`expect`), so the working
    set of the latest snapshots never falls out of it.

    Args:
        hook: The host's own redaction, called with each string after the
            built-in patterns; its result replaces the string.  When the hook
            raises, the string is replaced by ``[REDACTED]`` and the failure is
            logged once.
        scrub_secrets: Whether the built-in patterns run.
    """

    def __init__(self, hook: Callable[[str], str] | None = None, *, scrub_secrets: bool = True) -> None:
        self._hook = hook
        self._scrub = scrub_secrets
        self._current: dict[str, str] = {}
        self._previous: dict[str, str] = {}
        self._generation_size = _MIN_GENERATION_SIZE
        self._hook_failed = False
        self._lock = threading.Lock()

    @property
    def active(self) -> bool:
        """Whether this redactor changes anything at all."""
        return self._scrub or self._hook is not None

    def expect(self, strings: int) -> None:
        """Size the cache for payloads of about ``strings`` strings."""
        self._generation_size = max(_MIN_GENERATION_SIZE, 2 * strings)

    def __call__(self, text: str) -> str:
        """Return ``text`` with its secrets replaced."""
        cached = self._current.get(text)
        if cached is not None:
            return cached
        cached = self._previous.get(text)
        if cached is None:
            cached = self._redact(text)
        if len(self._current) >= self._generation_size:
            self._previous = self._current
            self._current = {}
        self._current[text] = cached
        return cached

    def scrub_texts(self, texts: list[str]) -> list[str]:
        """Return the scrubbed text of each of ``texts``, with one cache lookup for each one seen before."""
        current_get = self._current.get
        scrubbed_texts = []
        for text in texts:
            scrubbed = current_get(text)
            if scrubbed is None:
                scrubbed = self(text)
                current_get = self._current.get  # a new generation may have started
            scrubbed_texts.append(scrubbed)
        return scrubbed_texts

    def scrub_row(self, row: dict[str, Any]) -> None:
        """Replace every string value of ``row`` by its scrubbed text, in place."""
        current_get = self._current.get
        for key, value in row.items():
            if type(value) is str:
                scrubbed = current_get(value)
                if scrubbed is None:
                    scrubbed = self(value)
                    current_get = self._current.get  # a new generation may have started
                if scrubbed is not value:
                    row[key] = scrubbed

    def _redact(self, text: str) -> str:
        result = text
        if self._scrub and len(text) >= _MIN_SECRET_LENGTH:
            lowered = text.lower()
            for _name, literals, pattern in SECRET_PATTERNS:
                if any(literal in lowered for literal in literals):
                    result = pattern.sub(_replace, result)
        if self._hook is not None:
            try:
                hooked = self._hook(result)
            except Exception as exc:  # the host's code; never let it break recording
                self._report_hook_failure(f"raised {type(exc).__name__}")
                return REDACTED
            if not isinstance(hooked, str):
                self._report_hook_failure(f"returned {type(hooked).__name__}, not str")
                return REDACTED
            result = hooked
        return result

    def _report_hook_failure(self, what: str) -> None:
        with self._lock:
            first = not self._hook_failed
            self._hook_failed = True
        if first:
            _logger.warning(
                "The redaction hook %s; strings it fails on are replaced by %s. "
                "Further failures are not logged.",
                what,
                REDACTED,
            )
