"""Deterministic sample CRM snapshots for the local run, the end-to-end tests and demos.

One CSV per day, ``crm_YYYY-MM-DD.csv``, for companies ``C000001 .. C{N:06d}``: the same ids
as the mock Product Usage API (pipeline_tools/mock_usage_api.py), so the two sides join. The
sample has the wrinkles a real CRM export has:

- renames and country changes from some day on (slowly changing attributes);
- companies that appear late and companies that disappear;
- ``last_contact_at`` as UTC (``Z``), naive (means UTC), with an offset, or empty;
- names with commas, quotes and non-ASCII letters (RFC 4180 quoting, UTF-8);
- a header variant (mixed case, ``company_name``, spaces) and a file with a UTF-8 BOM;
- one BAD file (the ``country`` column is missing), which the pipeline must quarantine.

Everything derives from ``seed``, and each company from its own number, so a larger sample
contains a smaller one's companies unchanged. ``python -m pipeline_tools.sample_data --out DIR``
writes the files.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click

from shared.clock import utc_today

# The CRM file contract (SPEC section 2), in the order the sample writes the columns.
COLUMNS = ("company_id", "name", "country", "industry_tag", "last_contact_at")
VARIANT_HEADER = ("Company_ID", " Company_Name", " Country", " Industry_Tag", " Last_Contact_At")
BAD_FILE_DROPS = "country"

LATE_PERCENT = 4  # companies that first appear after the first day
GONE_PERCENT = 3  # companies that stop appearing before the last day
RENAMED_PERCENT = 5
MOVED_PERCENT = 3  # country changes
DAILY_CONTACT_PERCENT = 12  # chance a company is contacted on a given day

_ADJECTIVES = ("Blue", "Northern", "Bright", "Silver", "Rapid", "Quiet", "Golden", "Open", "Red", "Green", "Iron")
_NOUNS = ("River", "Harbor", "Summit", "Forge", "Signal", "Orchard", "Beacon", "Atlas", "Meadow", "Vector", "Pine")
_SUFFIXES = ("Systems", "Labs", "Analytics", "Logistics", "Foods", "Health", "Energy", "Software", "Retail", "Partners")
_LEGAL = ("", "", "", ", Inc.", " Ltd", " GmbH", " AG", " S.A.", ", LLC")
_SPECIAL_NAMES = ('The "Good" Company', "Müller & Söhne GmbH", "Ærø Fisk, A/S", "Crème, Brûlée & Co")
_COUNTRIES = ("US", "US", "US", "GB", "DE", "FR", "NL", "SE", "ES", "CA", "AU", "JP", "BR", "IN")
_INDUSTRIES = ("saas", "fintech", "retail", "healthcare", "manufacturing", "logistics", "media", "education")


def company_id(number: int) -> str:
    """Company ids shared with the mock usage API: C000001 .. C{N:06d}."""
    return f"C{number:06d}"


@dataclass(frozen=True)
class SampleCompany:
    """One company's attributes over the sample's days (day indexes count from the start date)."""

    number: int
    name: str
    country: str
    industry_tag: str
    first_day: int
    last_day: int | None  # inclusive; None: present until the end
    renamed_on: int | None
    new_name: str
    moved_on: int | None
    new_country: str
    contact_days: tuple[int, ...]  # days with a contact; negative: before the sample starts
    contact_style: str  # "utc" | "naive" | "offset"

    @property
    def company_id(self) -> str:
        return company_id(self.number)

    def present_on(self, day: int) -> bool:
        return day >= self.first_day and (self.last_day is None or day <= self.last_day)

    def row_on(self, day: int, start: dt.date) -> tuple[str, str, str, str, str]:
        name = self.new_name if self.renamed_on is not None and day >= self.renamed_on else self.name
        country = self.new_country if self.moved_on is not None and day >= self.moved_on else self.country
        return (self.company_id, name, country, self.industry_tag, self._last_contact(day, start))

    def _last_contact(self, day: int, start: dt.date) -> str:
        """The latest contact up to this snapshot's day, written in this company's style."""
        past = [d for d in self.contact_days if d <= day]
        if not past:
            return ""
        last = past[-1]
        hour, minute = (self.number * 7 + last) % 10 + 8, (self.number * 13 + last * 7) % 60
        moment = dt.datetime.combine(start + dt.timedelta(days=last), dt.time(hour, minute))
        if self.contact_style == "naive":
            return moment.strftime("%Y-%m-%d %H:%M:%S")
        if self.contact_style == "offset":
            return moment.replace(tzinfo=dt.timezone(dt.timedelta(hours=2))).isoformat()
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class CrmSnapshotFile:
    snapshot_date: dt.date
    blob_name: str
    content: bytes
    rows: int
    bad_reason: str | None  # why the pipeline must reject it; None for a good file


class CrmSample:
    """The companies of a sample and their daily CRM snapshot files."""

    def __init__(
        self,
        companies: int = 200,
        start: dt.date | None = None,
        end: dt.date | None = None,
        *,
        seed: int = 7,
        bad_date: dt.date | None = None,
        include_bad_file: bool = True,
    ) -> None:
        if companies < 1:
            raise ValueError("companies must be at least 1")
        self.end = end or (utc_today() - dt.timedelta(days=1))
        self.start = start or (self.end - dt.timedelta(days=29))
        if self.start > self.end:
            raise ValueError(f"start {self.start} is after end {self.end}")
        self.days = (self.end - self.start).days + 1
        self.seed = seed
        self.bad_date = (bad_date or self.start + dt.timedelta(days=self.days // 2)) if include_bad_file else None
        if self.bad_date is not None and not self.start <= self.bad_date <= self.end:
            raise ValueError(f"bad_date {self.bad_date} is outside {self.start}..{self.end}")
        self.companies = [_company(n, self.days, seed) for n in range(1, companies + 1)]

    def dates(self) -> list[dt.date]:
        return [self.start + dt.timedelta(days=i) for i in range(self.days)]

    def company_ids_on(self, day: dt.date) -> list[str]:
        """Companies listed in that day's snapshot (also for the bad file's day, whose rows exist)."""
        index = (day - self.start).days
        return [c.company_id for c in self.companies if c.present_on(index)]

    def files(self) -> Iterator[CrmSnapshotFile]:
        for index, day in enumerate(self.dates()):
            yield self._file(index, day)

    def write(self, directory: str | Path) -> list[Path]:
        """Write every file into ``directory`` (created); returns the paths in date order."""
        target = Path(directory)
        target.mkdir(parents=True, exist_ok=True)
        paths = []
        for file in self.files():
            path = target / file.blob_name
            path.write_bytes(file.content)
            paths.append(path)
        return paths

    def _file(self, index: int, day: dt.date) -> CrmSnapshotFile:
        rows = [c.row_on(index, self.start) for c in self.companies if c.present_on(index)]
        random.Random(f"order:{self.seed}:{index}").shuffle(rows)  # noqa: S311 - exports are not sorted
        header: tuple[str, ...] = VARIANT_HEADER if index == 1 else COLUMNS
        bad_reason = None
        if day == self.bad_date:
            drop = COLUMNS.index(BAD_FILE_DROPS)
            header = COLUMNS[:drop] + COLUMNS[drop + 1 :]
            rows = [row[:drop] + row[drop + 1 :] for row in rows]
            bad_reason = f"required column {BAD_FILE_DROPS!r} is missing"
        buffer = io.StringIO(newline="")
        writer = csv.writer(buffer, lineterminator="\r\n")  # RFC 4180 line ends, as CRM exports write
        writer.writerow(header)
        writer.writerows(rows)
        encoding = "utf-8-sig" if index == 2 else "utf-8"  # one export tool adds a BOM
        return CrmSnapshotFile(
            day, f"crm_{day.isoformat()}.csv", buffer.getvalue().encode(encoding), len(rows), bad_reason
        )


def _company(number: int, days: int, seed: int) -> SampleCompany:
    """Everything about company ``number`` from its own random stream (independent of N)."""
    rng = random.Random(f"crm:{seed}:{number}")  # noqa: S311 - reproducible sample, not security
    first_day, last_day = 0, None
    if days > 2 and rng.randrange(100) < LATE_PERCENT:
        first_day = rng.randrange(1, days - 1)
    if days > 2 and rng.randrange(100) < GONE_PERCENT:
        last_day = rng.randrange(first_day + 1, days - 1) if first_day + 1 < days - 1 else None
    renamed_on = rng.randrange(1, days) if days > 1 and rng.randrange(100) < RENAMED_PERCENT else None
    moved_on = rng.randrange(1, days) if days > 1 and rng.randrange(100) < MOVED_PERCENT else None
    country = rng.choice(_COUNTRIES)
    contact_days = [-rng.randrange(1, 90)] if rng.randrange(100) < 80 else []
    contact_days += [d for d in range(days) if rng.randrange(100) < DAILY_CONTACT_PERCENT]
    return SampleCompany(
        number=number,
        name=_name(rng),
        country=country,
        industry_tag=rng.choice(_INDUSTRIES),
        first_day=first_day,
        last_day=last_day,
        renamed_on=renamed_on,
        new_name=_name(rng),
        moved_on=moved_on,
        new_country=rng.choice([c for c in _COUNTRIES if c != country]),
        contact_days=tuple(contact_days),
        contact_style=rng.choices(("utc", "naive", "offset"), weights=(60, 25, 15))[0],
    )


def _name(rng: random.Random) -> str:
    if rng.randrange(100) < 3:
        return rng.choice(_SPECIAL_NAMES)
    return f"{rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)} {rng.choice(_SUFFIXES)}{rng.choice(_LEGAL)}"


@click.command(help="Write deterministic sample CRM snapshot files (crm_YYYY-MM-DD.csv), one per day.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Directory to write into.")
@click.option("--companies", default=200, show_default=True, type=click.IntRange(min=1))
@click.option("--start", type=click.DateTime(["%Y-%m-%d"]), default=None, help="First day (default: end - 29 days).")
@click.option("--end", type=click.DateTime(["%Y-%m-%d"]), default=None, help="Last day (default: yesterday UTC).")
@click.option("--seed", default=7, show_default=True)
@click.option("--no-bad-file", is_flag=True, help="Leave out the one file with a missing column.")
def main(
    out_dir: str, companies: int, start: dt.datetime | None, end: dt.datetime | None, seed: int, no_bad_file: bool
) -> None:
    sample = CrmSample(
        companies,
        start.date() if start else None,
        end.date() if end else None,
        seed=seed,
        include_bad_file=not no_bad_file,
    )
    paths = sample.write(out_dir)
    click.echo(f"wrote {len(paths)} files for {companies} companies, {sample.start}..{sample.end} into {out_dir}")
    if sample.bad_date:
        click.echo(f"bad file: crm_{sample.bad_date.isoformat()}.csv (missing column {BAD_FILE_DROPS!r})")


if __name__ == "__main__":
    main()
