"""Plugin hooks: every hook specification fairq calls, and the plugin manager.

A plugin is a pip-installable distribution with an entry point in the group
``fairq.plugins``; the object the entry point names (usually a module) holds
functions decorated with :data:`hookimpl`. The core never imports a plugin: it
only calls these hooks. Plugins import this module and nothing else of
``app`` beyond its public API.

Each hook is documented in ``docs/plugins.md`` (a test keeps the two in step).
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import BinaryIO

import pluggy

__all__ = [
    "PROJECT",
    "ENTRY_POINT_GROUP",
    "hookimpl",
    "hookspec",
    "Source",
    "Channel",
    "Delivery",
    "DeliveryError",
    "JobKindSpec",
    "JobContext",
    "JobCancelled",
    "JobFailed",
    "campaigns",
    "MatchKey",
    "SettlementGrouping",
    "MatchRules",
    "Transaction",
    "RowError",
    "ParseContext",
    "SourceFileError",
    "Parser",
    "toolkit",
    "parse_table",
    "stage_table",
    "StagedParser",
    "get_plugin_manager",
    "sources",
    "channels",
    "job_kinds",
    "match_rules",
]

logger = logging.getLogger(__name__)

#: The pluggy project name (markers are ``fairq``).
PROJECT = "fairq"
#: The entry point group plugins declare in their setup.cfg.
ENTRY_POINT_GROUP = "fairq.plugins"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@dataclass(frozen=True, slots=True)
class Transaction:
    """One transaction as a source plugin read it, in fairq's canonical form.

    Parameters:
      txn_id: the rail's own id (UPI transaction id, else RRN; NEFT / IMPS / RTGS: the UTR);
        when a row carries none, a deterministic id derived from the row's content.
      amount: exact, positive; the sign lives in ``direction``.
      status: ``SUCCESS``, ``FAILED`` or ``PENDING`` (UPI "deemed" stays ``PENDING``).
      txn_time: when it happened, timezone-aware in UTC (``None`` if the file has no date).
      direction: ``DR`` (money out) or ``CR`` (money in), if the file says.
      currency: ISO 4217 code.
      reference: the matching key of the rail: RRN for UPI, normalised UTR for NEFT / IMPS / RTGS.
      counterparty: the other side: a VPA, or ``IFSC/account``, or a name from a narration.
      ifsc: the counterparty's IFSC, if known.
      settlement_date: the settlement date (or cycle date) for grouped settlements.
      raw_row: the whole original row, header name to cell text.
      line: the row's line number in the file (1-based, counting the header and preamble).
    """

    txn_id: str
    amount: Decimal
    status: str
    txn_time: datetime | None
    direction: str | None = None
    currency: str = "INR"
    reference: str | None = None
    counterparty: str | None = None
    ifsc: str | None = None
    settlement_date: date | None = None
    raw_row: Mapping[str, str] = field(default_factory=dict)
    line: int = 0


@dataclass(frozen=True, slots=True)
class RowError:
    """A row a parser rejected: where, why, and the original text."""

    line: int
    reason: str
    raw: str


@dataclass(frozen=True, slots=True)
class ParseContext:
    """What a parser is told about the file it reads.

    Parameters:
      timezone: the IANA zone of local times in the file (stored in UTC).
      ledger: ``external`` (a bank / switch / settlement file) or ``internal``.
    """

    timezone: str = "Asia/Kolkata"
    ledger: str = "external"


class SourceFileError(ValueError):
    """The whole file cannot be read (no recognisable header, ...): one clear reason."""


#: A streaming parser: reads bytes as they arrive and yields each row's outcome in file order.
Parser = Callable[[BinaryIO, ParseContext], Iterator[Transaction | RowError]]
#: A parser for the bulk loader: like :data:`Parser`, but a plain row may come as a ``str``, its
#: line of ``COPY`` text (only :func:`stage_table` makes those).
StagedParser = Callable[[BinaryIO, ParseContext], Iterator[Transaction | RowError | str]]


@dataclass(frozen=True)
class Source:
    """A kind of transaction file a plugin can read.

    Parameters:
      name: the name users pass as ``"source"`` (case-insensitive), e.g. ``UPI``.
      aliases: other names for the same layout, e.g. ``IMPS``, ``RTGS``.
      description: one line for ``fairq plugins`` and error messages.
      parse: the streaming parser (raises :class:`SourceFileError` for a file it cannot read).
      stage: optional, the same parser for the bulk loader (PostgreSQL), made with
        :func:`stage_table`: it gives the same rows, values and row errors as ``parse``, plain
        rows already rendered. Without it the loader renders what ``parse`` yields.
    """

    name: str
    aliases: tuple[str, ...] = ()
    description: str = ""
    parse: Parser | None = field(default=None, compare=False)
    stage: StagedParser | None = field(default=None, compare=False)
    plugin: str = field(default="", compare=False)

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name.upper(), *(alias.upper() for alias in self.aliases))


@dataclass(frozen=True)
class Delivery:
    """One message of one campaign run to one recipient, as a channel is handed it.

    Parameters:
      tenant_id, campaign_id, campaign_name: whose campaign.
      run: the campaign's run (a recurring campaign runs many times).
      recipient: the recipient's position in the audience (0 with no audience).
      data: the recipient's audience row (empty with no audience).
      message: the campaign's template rendered with ``data``.
      delivery_id: ``<campaign>:<run>:<recipient>``, the same on every attempt (receivers dedupe on it).
      attempt: 1 for the first attempt.
    """

    tenant_id: str
    campaign_id: int
    campaign_name: str
    run: int
    recipient: int
    data: Mapping[str, object]
    message: str
    delivery_id: str
    attempt: int = 1


class DeliveryError(Exception):
    """A channel could not deliver. ``retryable``: trying again later may help (a timeout, a 5xx);
    otherwise the delivery fails at once and goes to the dead-letter queue."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True)
class Channel:
    """A way to deliver a campaign message.

    Parameters:
      name: the name campaigns give as ``"channel"``, e.g. ``log``.
      description: one line for ``fairq plugins``.
      deliver: ``deliver(delivery) -> dict | None`` sends one message; what it returns is kept in
        the processing log. Raises :class:`DeliveryError`.
      needs_webhook: campaigns on it need the tenant's webhook settings.
    """

    name: str
    description: str = ""
    deliver: Callable[[Delivery], dict | None] | None = field(default=None, compare=False)
    needs_webhook: bool = False
    plugin: str = field(default="", compare=False)


@dataclass(frozen=True)
class JobKindSpec:
    """A job kind a plugin runs (the core declares it as a Dramatiq actor behind the gate).

    Parameters:
      name: the kind, e.g. ``campaign.deliver``.
      run: ``run(job: JobContext) -> dict | None``; a result's ``messages`` is metered.
      max_retries, time_limit, cost_estimate: as ``app.scheduling.kinds.job_kind``.
    """

    name: str
    run: Callable[..., dict | None] = field(compare=False)
    max_retries: int = 3
    time_limit: float = 300.0
    cost_estimate: float = 0.05
    plugin: str = field(default="", compare=False)


@dataclass(frozen=True)
class MatchKey:
    """A key that pairs a ledger row with a bank / switch row when both carry it.

    Parameters:
      column: the canonical column compared for equality: ``reference`` (RRN, UTR) or ``txn_id``.
      label: how notes name it, e.g. ``RRN``.
      window_hours: the two rows' times must also lie within this many hours of each other
        (an RRN's one-digit year repeats every decade); ``None``: the key alone decides.
    """

    column: str
    label: str
    window_hours: float | None = None


@dataclass(frozen=True)
class SettlementGrouping:
    """Many rows of one side settled by one row of the other (a bulk settlement credit).

    A row of the ``one`` side without the main key and with a ``settlement_date`` is a
    settlement; it matches the ``many`` side's successful rows of the same settlement date and
    direction when the fee (what the ledger books less what the bank shows: the bank side nets
    it off) lies between 0 and ``max_fee_percent`` of the ledger's amount, plus the amount
    tolerance.

    Parameters:
      many: ``internal`` (many payments in the ledger, one credit in the bank file) or ``external``.
      max_fee_percent: the largest fee, as a percentage of the grouped payments, netted off.
    """

    many: str = "internal"
    max_fee_percent: Decimal = Decimal("0")

    @property
    def one(self) -> str:
        return "external" if self.many == "internal" else "internal"


@dataclass(frozen=True)
class MatchRules:
    """How reconciliation matches one source's rows (see ``docs/plugins.md``).

    Parameters:
      source: the :class:`Source` name these rules are for (its aliases share them).
      keys: tried in order; the first is the main key (its ties on one side are duplicates or
        reversals), the next ones pair what the earlier ones left.
      fallback: columns that must be equal, besides amount (tolerance) and date (window), to
        pair rows when a key is missing on one side: e.g. ``("counterparty",)``; more than one
        candidate is ``ambiguous``.
      grouping: the one-to-many settlement rule, if the rail has one.
      pending_grace_hours: a ``PENDING`` payment younger than this is not a break yet.
    """

    source: str
    keys: tuple[MatchKey, ...]
    fallback: tuple[str, ...] = ("counterparty",)
    grouping: SettlementGrouping | None = None
    pending_grace_hours: float = 0.0
    plugin: str = field(default="", compare=False)


class FairqSpecs:
    """The hook specifications."""

    @hookspec
    def fairq_register_sources(self) -> list[Source]:
        """Called once when the plugin manager is built, to learn the transaction sources.

        Returns:
          A list of :class:`Source` this plugin reads. Names must be unique
          across plugins.
        """

    @hookspec
    def fairq_register_channels(self) -> list[Channel]:
        """Called once when the plugin manager is built, to learn the campaign channels.

        Returns:
          A list of :class:`Channel` this plugin delivers through.
        """

    @hookspec
    def fairq_register_job_kinds(self) -> list[JobKindSpec]:
        """Called once when the workers' job kinds are declared (``app.tasks`` is imported).

        Returns:
          A list of :class:`JobKindSpec` this plugin runs. Names must be unique across
          plugins and fairq's own kinds.
        """

    @hookspec
    def fairq_register_match_rules(self) -> list[MatchRules]:
        """Called when reconciliation looks up a source's matching rules.

        Returns:
          A list of :class:`MatchRules`, one per source this plugin knows how to reconcile.
          A source claimed by two plugins is an error.
        """


def get_plugin_manager(*, load_entry_points: bool = True) -> pluggy.PluginManager:
    """A new plugin manager: the specifications, then every installed plugin.

    Parameters:
      load_entry_points: load the ``fairq.plugins`` entry points (tests turn it
        off to register plugins by hand).

    Raises:
      pluggy.PluginValidationError: a plugin implements a hook that does not exist.
    """
    manager = pluggy.PluginManager(PROJECT)
    manager.add_hookspecs(FairqSpecs)
    if load_entry_points:
        count = manager.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
        logger.debug("loaded %d fairq plugins", count)
    manager.check_pending()
    return manager


def _collect(manager: pluggy.PluginManager, hook_name: str) -> list:
    """Call a registration hook plugin by plugin, stamping each item with its plugin's name."""
    items = []
    hook = getattr(manager.hook, hook_name)
    for impl in hook.get_hookimpls():
        for item in impl.function() or ():
            items.append(dataclasses.replace(item, plugin=impl.plugin_name))
    return items


def sources(manager: pluggy.PluginManager) -> dict[str, Source]:
    """Every installed source by each of its names (upper case).

    Raises:
      ValueError: two plugins claim the same name.
    """
    by_name: dict[str, Source] = {}
    for source in _collect(manager, "fairq_register_sources"):
        for name in source.names:
            if name in by_name and by_name[name] != source:
                raise ValueError(
                    f"source {name!r} is registered by both {by_name[name].plugin} and {source.plugin}"
                )
            by_name[name] = source
    return by_name


def _by_name(manager: pluggy.PluginManager, hook_name: str, what: str) -> dict:
    """The items a registration hook returns, by name; a name claimed twice is an error."""
    by_name: dict = {}
    for item in _collect(manager, hook_name):
        if item.name in by_name:
            raise ValueError(f"{what} {item.name!r} is registered by both {by_name[item.name].plugin} and {item.plugin}")
        by_name[item.name] = item
    return by_name


def channels(manager: pluggy.PluginManager) -> dict[str, Channel]:
    """Every installed campaign channel by name.

    Raises:
      ValueError: two plugins claim the same name.
    """
    return _by_name(manager, "fairq_register_channels", "channel")


def job_kinds(manager: pluggy.PluginManager) -> dict[str, JobKindSpec]:
    """Every job kind plugins run, by name.

    Raises:
      ValueError: two plugins claim the same name.
    """
    return _by_name(manager, "fairq_register_job_kinds", "job kind")


def match_rules(manager: pluggy.PluginManager) -> dict[str, MatchRules]:
    """Every source's matching rules by the source's name (upper case).

    Raises:
      ValueError: two plugins give rules for the same source.
    """
    by_name: dict[str, MatchRules] = {}
    for rules in _collect(manager, "fairq_register_match_rules"):
        name = rules.source.upper()
        if name in by_name:
            raise ValueError(f"matching rules for {name!r} come from both {by_name[name].plugin} and {rules.plugin}")
        by_name[name] = rules
    return by_name


# The public API plugins are handed (imported last: these modules need the types above).
from app.campaigns import runtime as campaigns  # noqa: E402
from app.ingest import toolkit  # noqa: E402
from app.scheduling.kinds import JobCancelled, JobContext, JobFailed  # noqa: E402


def parse_table(
    stream: BinaryIO,
    context: ParseContext,
    *,
    columns: Mapping[str, tuple[str, ...]],
    required: tuple[tuple[str, ...], ...],
    date_fields: tuple[str, ...],
    build: Callable[..., Transaction],
) -> Iterator[Transaction | RowError]:
    """The loop every CSV source plugin needs: header, day-first evidence, one outcome per row.

    Parameters:
      columns, required: the plugin's header aliases and required columns (see ``toolkit.read_table``).
      date_fields: the columns whose dates settle day-first against month-first.
      build: ``build(record, day_first=..., where=...)`` returns the row's transaction or
        raises ``toolkit.BadValue`` with the row's first problem.

    Raises:
      SourceFileError: the file cannot be read, or (after the last row) no row was valid.
    """
    valid = errors = 0
    try:
        where = toolkit.zone(context.timezone)
        records = toolkit.read_table(stream, columns=columns, required=required)
        day_first, records = toolkit.settle_day_first(records, fields=date_fields)
        for record in records:
            try:
                transaction = build(record, day_first=day_first, where=where)
            except toolkit.BadValue as problem:
                if not record.trailing:
                    errors += 1
                    yield RowError(record.line, str(problem), record.raw)
                continue
            valid += 1
            yield transaction
    except toolkit.UnreadableFile as exc:
        raise SourceFileError(str(exc)) from None
    if not valid:
        reason = f"all {errors} rows have errors" if errors else "a header but no data"
        raise SourceFileError(f"no valid rows: {reason}")


def stage_table(
    stream: BinaryIO,
    context: ParseContext,
    *,
    columns: Mapping[str, tuple[str, ...]],
    required: tuple[tuple[str, ...], ...],
    date_fields: tuple[str, ...],
    build: Callable[..., Transaction],
    fast: Callable[..., Callable[[list[str]], tuple | None] | None],
) -> Iterator[Transaction | RowError | str]:
    """:func:`parse_table` with a fast path for clean rows, for a :class:`Source`'s ``stage``.

    ``fast(index, day_first=..., where=...)`` is called once the header (``index``: field name
    to column position) and the day order are known; it returns a function from a plain row's
    cells to the row's canonical values as text, or ``None`` when it is not sure (the row then
    goes through ``build`` like in ``parse_table``). See :func:`app.ingest.staged.stage_table`
    for the exact contract; a plugin's tests should check that both ways give the same rows.

    Raises:
      SourceFileError: as ``parse_table``.
    """
    from app.ingest.staged import stage_table as staged  # the loader's module: imported when used

    return staged(stream, context, columns=columns, required=required, date_fields=date_fields,
                  build=build, fast=fast)
