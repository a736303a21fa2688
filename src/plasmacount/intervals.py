"""Fragment features over given genomic sites: coverage, windowed protection score, cleavage.

Where nucleosomes sit, cfDNA is protected; where transcription factors or open chromatin are
(a gene's transcription start site, DNase sites), it is cut. Over a BED of sites, from the
fragments the counting rules keep:
- coverage: fragments whose midpoint, floor((start + end) / 2), lies in the site (FinaleToolkit's
  default), and per million counted fragments;
- the windowed protection score (WPS, Snyder et al. 2016, Cell 164: 57) at every position of a
  window of `interval_size` bp centred on the site's midpoint: fragments spanning the window of
  `window` bp around the position minus fragments with an end inside it. The window of position p
  is [p - window/2, p + window/2 - 1] (inclusive); a fragment [start, end) spans it when start is
  before its first base and end after its last; it ends in it when start or end lies in it
  (FinaleToolkit's definition). The long-fragment WPS uses 120-180 bp fragments and a 120 bp
  window; the short one 35-80 bp and 16 bp;
- the adjusted WPS: minus its running median over `median_window` bp (the scores trimmed by half
  that at each side), then a Savitzky-Golay filter (21 bp, degree 2): FinaleToolkit's adjust-wps;
- the cleavage profile: at each position, fragment ends there over fragments covering it, in %
  (a forward fragment's end is its start, a reverse one's its end coordinate, one past its last
  base: FinaleToolkit's rule);
- per site: the mean WPS and adjusted WPS over the central `window` bp, the coverage, and a
  gene-level table (sites with the same name, e.g. a gene's transcription start sites, averaged).
Everything is computed with difference arrays over each site's window: O(fragments + bases).
"""

from __future__ import annotations

import functools
import gzip
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

import numpy as np

from plasmacount.errors import DataError, UsageError


class WpsSettings(TypedDict):
    window: int
    lengths: tuple[int, int]


LONG_WPS: WpsSettings = {"window": 120, "lengths": (120, 180)}
SHORT_WPS: WpsSettings = {"window": 16, "lengths": (35, 80)}
INTERVAL_SIZE = 5000
MEDIAN_WINDOW = 1000
SAVGOL_WINDOW = 21
SAVGOL_DEGREE = 2
# "coverage" skips the per-base scores and tracks (a coverage table over many sites in about a counting pass)
INTERVAL_FEATURES = ("all", "coverage")


@dataclass(frozen=True)
class Site:
    chrom: str
    start: int
    end: int
    name: str
    strand: str


def read_sites(path: str | os.PathLike) -> list[Site]:
    """Sites from a BED (chrom, start, end[, name[, score[, strand]]]); '#', 'track' and 'browser' lines skipped."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    sites = []
    try:
        with opener(path, "rt") as stream:
            for number, line in enumerate(stream, 1):
                if not line.strip() or line.startswith(("#", "track", "browser")):
                    continue
                fields = line.rstrip("\n").split("\t")
                try:
                    start, end = int(fields[1]), int(fields[2])
                except (IndexError, ValueError):
                    raise DataError(
                        f"{path}: line {number} is not BED (chrom, start, end, ...); fix or remove it"
                    ) from None
                if end <= start or start < 0:
                    raise DataError(f"{path}: line {number} has an empty or negative interval ({start}-{end})")
                name = fields[3] if len(fields) > 3 and fields[3] else f"{fields[0]}:{start}-{end}"
                strand = fields[5] if len(fields) > 5 and fields[5] in "+-" else "."
                sites.append(Site(fields[0], start, end, name, strand))
    except FileNotFoundError:
        raise DataError(f"{path}: file not found; check --intervals") from None
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot read ({error})") from None
    if not sites:
        raise DataError(f"{path}: holds no intervals")
    return sites


@dataclass
class ContigFragments:
    """One contig's fragments, sorted by start."""

    start: np.ndarray
    end: np.ndarray
    reverse: np.ndarray

    def __post_init__(self) -> None:
        self.longest = int((self.end - self.start).max()) if self.start.size else 0
        self._midpoints: np.ndarray | None = None

    def midpoints_in(self, first: int, last: int) -> int:
        """Fragments whose midpoint, floor((start + end) / 2), lies in [first, last)."""
        if self._midpoints is None:
            self._midpoints = np.sort((self.start + self.end) // 2)
        return int(
            np.searchsorted(self._midpoints, last, side="left") - np.searchsorted(self._midpoints, first, side="left")
        )

    def midpoint_mask(self, first: int, last: int) -> tuple[slice, np.ndarray]:
        """(a slice of the fragments, which of them have their midpoint in [first, last))."""
        low = np.searchsorted(self.start, first - self.longest, side="left")
        high = np.searchsorted(self.start, last, side="right")
        middle = (self.start[low:high] + self.end[low:high]) // 2
        return slice(low, high), (middle >= first) & (middle < last)

    def overlapping(
        self, first: int, last: int, lengths: tuple[int, int] | None = None, margin: int = 0
    ) -> ContigFragments:
        """Fragments that may touch [first - margin, last + margin), with a length in `lengths`."""
        # A fragment starting before first - margin - longest may still reach; lengths bound that reach.
        longest = self.longest
        low = np.searchsorted(self.start, first - margin - longest, side="left")
        high = np.searchsorted(self.start, last + margin, side="right")
        s, e, r = self.start[low:high], self.end[low:high], self.reverse[low:high]
        keep = (e > first - margin) & (s < last + margin)
        if lengths is not None:
            keep &= (e - s >= lengths[0]) & (e - s <= lengths[1])
        return ContigFragments(s[keep], e[keep], r[keep])


def by_contig(fragments: np.ndarray, names: list[str]) -> dict[str, ContigFragments]:
    """Fragments (rows: reference index, start, end, 2 MAPQ + reverse) grouped by contig name.
    Reads of unknown fragment length (single-end, end -1) have no extent or midpoint: left out."""
    result = {}
    fragments = fragments[fragments[:, 2] >= 0]
    # The counter emits fragments contig by contig, in the order of the records that stand for
    # them: each contig's block is sorted by start already or nearly (the read-1 rule), which a
    # stable sort (timsort) finishes in about one pass.
    refs = fragments[:, 0]
    if refs.size and np.any(refs[1:] < refs[:-1]):
        fragments = fragments[np.argsort(refs, kind="stable")]
        refs = fragments[:, 0]
    boundaries = np.concatenate([[0], np.flatnonzero(refs[1:] != refs[:-1]) + 1, [refs.size]])
    for low, high in zip(boundaries[:-1], boundaries[1:]):
        if high <= low:
            continue
        part = fragments[low:high]
        order = np.argsort(part[:, 1], kind="stable")
        part = part[order]
        result[names[int(part[0, 0])]] = ContigFragments(
            part[:, 1].copy(), part[:, 2].copy(), (part[:, 3] & 1).astype(bool)
        )
    return result


@dataclass
class SortedMidpoints:
    """One contig's fragment midpoints, sorted: all that coverage needs."""

    midpoints: np.ndarray

    def midpoints_in(self, first: int, last: int) -> int:
        return int(
            np.searchsorted(self.midpoints, last, side="left") - np.searchsorted(self.midpoints, first, side="left")
        )


def midpoints_by_contig(fragments: np.ndarray, names: list[str]) -> dict[str, SortedMidpoints]:
    """The midpoints, floor((start + end) / 2), of fragments of known length, per contig name:
    one sort of (reference, midpoint) keys instead of `by_contig`'s per-contig tables."""
    keys = (fragments[:, 0] << 40) | ((fragments[:, 1] + fragments[:, 2]) >> 1)  # >> 1: floor, as // 2
    known = fragments[:, 2] >= 0
    if not known.all():
        keys = keys[known]
    keys.sort()
    references = keys >> 40
    boundaries = np.concatenate([[0], np.flatnonzero(references[1:] != references[:-1]) + 1, [keys.size]])
    return {
        names[int(references[low])]: SortedMidpoints(keys[low:high] & ((1 << 40) - 1))
        for low, high in zip(boundaries[:-1], boundaries[1:])
        if high > low
    }


def _add_range(diff: np.ndarray, first: np.ndarray, last: np.ndarray, value: int) -> None:
    """Add `value` at indices [first, last] (inclusive, clipped to the array) through a difference array."""
    n = diff.size - 1
    ok = last >= first
    first, last = np.clip(first[ok], 0, n), np.clip(last[ok] + 1, 0, n)
    np.add.at(diff, first, value)
    np.add.at(diff, last, -value)


def wps(fragments: ContigFragments, first: int, last: int, window: int, lengths: tuple[int, int]) -> np.ndarray:
    """The WPS at positions first..last - 1 (see the module docstring)."""
    chosen = fragments.overlapping(first, last, lengths, margin=window)
    n = last - first
    before, after = int(round(window * 0.5)), int(round(window * 0.5 - 1))
    s, e = chosen.start - first, chosen.end - first  # positions relative to `first`
    diff = np.zeros(n + 1, dtype=np.int64)
    # Spanning: s < p - before and e > p + after, i.e. p in [s + before + 1, e - after - 1].
    _add_range(diff, s + before + 1, e - after - 1, 1)
    # An end inside: s or e in [p - before, p + after], i.e. p in [s - after, s + before] or [e - after, e + before];
    # the two ranges overlap for fragments shorter than the window, and a fragment counts once.
    _add_range(diff, s - after, s + before, -1)
    _add_range(diff, e - after, e + before, -1)
    both_first, both_last = np.maximum(s - after, e - after), np.minimum(s + before, e + before)
    _add_range(diff, both_first, both_last, 1)
    return np.cumsum(diff[:-1])


def adjusted_wps(
    scores: np.ndarray,
    median_window: int = MEDIAN_WINDOW,
    savgol_window: int = SAVGOL_WINDOW,
    degree: int = SAVGOL_DEGREE,
) -> np.ndarray:
    """Scores minus their running median, smoothed by Savitzky-Golay (FinaleToolkit's adjust-wps):
    the medians of the first len - median_window windows, set against the scores from
    median_window / 2 on, so the result is median_window positions shorter."""
    from scipy.ndimage import rank_filter

    n_windows = scores.size - median_window
    if n_windows <= savgol_window:
        raise UsageError(
            f"the WPS window ({scores.size} bp) must be longer than the median window ({median_window} bp) "
            f"plus the Savitzky-Golay window ({savgol_window} bp)"
        )
    # The median of window i (scores i .. i + median_window - 1): the mean of its two middle ranks
    # (numpy's median for an even count), from scipy's rank filters, whose window at j + half starts at j.
    values = scores.astype(float)
    half = median_window // 2
    upper = rank_filter(values, rank=half, size=median_window, mode="nearest")
    lower = rank_filter(values, rank=(median_window - 1) // 2, size=median_window, mode="nearest")
    running = ((upper + lower) / 2)[half : half + n_windows]
    adjusted = scores[half : scores.size - half].astype(float)[:n_windows] - running
    return savitzky_golay(adjusted, savgol_window, degree)


@functools.lru_cache(maxsize=8)
def _savitzky_golay_weights(window: int, degree: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The least-squares polynomial weights: at the centre of a window, and at the positions of
    the first and last half windows (a polynomial fitted to the first or last whole window)."""
    half = window // 2
    offsets = np.arange(-half, half + 1, dtype=float)
    powers = np.vander(offsets, degree + 1, increasing=True)
    fit = np.linalg.pinv(powers)  # polynomial coefficients from a window's values
    return fit[0], powers[:half] @ fit, powers[half + 1 :] @ fit


def savitzky_golay(values: np.ndarray, window: int, degree: int) -> np.ndarray:
    """The Savitzky-Golay filter with polynomial fits at the edges (scipy's savgol_filter, mode
    "interp"), from weights computed once: importing scipy.signal costs about a second."""
    if window % 2 == 0 or window <= degree or values.size < window:
        raise UsageError(
            f"the Savitzky-Golay window must be odd, above the degree and at most the data's length, not {window}"
        )
    centre, left, right = _savitzky_golay_weights(window, degree)
    half = window // 2
    result = np.empty(values.size, dtype=float)
    result[half : values.size - half] = np.correlate(values, centre, mode="valid")
    result[:half] = left @ values[:window]
    result[values.size - half :] = right @ values[values.size - window :]
    return result


def cleavage_profile(
    fragments: ContigFragments, first: int, last: int, lengths: tuple[int, int] | None = None
) -> np.ndarray:
    """Fragment ends over covering fragments (%) at each position first..last - 1 (see the module docstring)."""
    chosen = fragments.overlapping(first, last, lengths)
    n = last - first
    s, e = chosen.start - first, chosen.end - first
    diff = np.zeros(n + 1, dtype=np.int64)
    np.add.at(diff, np.clip(s, 0, n), 1)
    np.add.at(diff, np.clip(e, 0, n), -1)
    depth = np.cumsum(diff[:-1])
    ends = np.zeros(n, dtype=np.int64)
    forward = s[~chosen.reverse]
    reverse = e[chosen.reverse]
    np.add.at(ends, forward[(forward >= 0) & (forward < n)], 1)
    np.add.at(ends, reverse[(reverse >= 0) & (reverse < n)], 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(depth > 0, 100.0 * ends / depth, 0.0)


def site_window(site: Site, contig_length: int, interval_size: int = INTERVAL_SIZE) -> tuple[int, int]:
    """The window of `interval_size` bp centred on the site's midpoint, clipped to the contig."""
    middle = (site.start + site.end) // 2
    return max(0, middle + int(round(-interval_size / 2))), min(middle + int(round(interval_size / 2)), contig_length)


def site_features(
    fragments: dict[str, ContigFragments] | dict[str, SortedMidpoints],
    sites: list[Site],
    contig_lengths: dict[str, int],
    total_fragments: int,
    interval_size: int = INTERVAL_SIZE,
    features: str = "all",
) -> tuple[list[dict], dict[str, list[tuple[str, int, np.ndarray]]]]:
    """Per site: coverage, mean long and short WPS and adjusted WPS around its midpoint; and the
    per-base tracks (long WPS, adjusted long WPS, cleavage) as (contig, first position, values).
    With `features="coverage"` only the coverage (the WPS columns None, no tracks), for which
    `midpoints_by_contig` is enough."""
    if features not in INTERVAL_FEATURES:
        raise UsageError(f"interval features are one of {', '.join(INTERVAL_FEATURES)}, not {features!r}")
    rows: list[dict] = []
    tracks: dict[str, list[tuple[str, int, np.ndarray]]] = {"wps": [], "wps_adjusted": [], "cleavage": []}
    empty = ContigFragments(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool))
    for site in sites:
        if site.chrom not in contig_lengths:
            raise DataError(
                f"interval {site.name} is on {site.chrom}, which the alignments do not have; check the BED's contig names"
            )
        on = fragments.get(site.chrom, empty)
        coverage = on.midpoints_in(site.start, site.end)
        row = {
            "chrom": site.chrom,
            "start": site.start,
            "end": site.end,
            "name": site.name,
            "strand": site.strand,
            "coverage": coverage,
            "coverage_per_million": 1e6 * coverage / total_fragments if total_fragments else None,
            "wps_long_centre": None,
            "wps_short_centre": None,
            "wps_long_adjusted_centre": None,
        }
        rows.append(row)
        if features == "coverage":
            continue
        # The WPS and cleavage need each fragment's ends, which only ContigFragments keeps.
        assert isinstance(on, ContigFragments), "WPS and cleavage need intervals.by_contig(...), not midpoints"
        first, last = site_window(site, contig_lengths[site.chrom], interval_size)
        centre = slice(
            max(0, (last - first) // 2 - LONG_WPS["window"] // 2), (last - first) // 2 + LONG_WPS["window"] // 2
        )
        long_scores = wps(on, first, last, **LONG_WPS)
        short_scores = wps(on, first, last, **SHORT_WPS)
        row["wps_long_centre"] = float(long_scores[centre].mean()) if long_scores.size else None
        row["wps_short_centre"] = float(short_scores[centre].mean()) if short_scores.size else None
        if last - first > MEDIAN_WINDOW + SAVGOL_WINDOW:
            adjusted = adjusted_wps(long_scores)
            offset = MEDIAN_WINDOW // 2
            inner = slice(max(0, centre.start - offset), max(0, centre.stop - offset))
            row["wps_long_adjusted_centre"] = float(adjusted[inner].mean()) if adjusted[inner].size else None
            tracks["wps_adjusted"].append((site.chrom, first + offset, adjusted))
        tracks["wps"].append((site.chrom, first, long_scores.astype(float)))
        tracks["cleavage"].append((site.chrom, first, cleavage_profile(on, first, last)))
    return rows, tracks


def gene_table(rows: list[dict]) -> list[dict]:
    """Sites of one name (a gene's transcription start sites) averaged."""
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row["name"], []).append(row)
    table = []
    for name, members in groups.items():

        def mean(key: str, members: list[dict] = members) -> float | None:
            values = [m[key] for m in members if m[key] is not None]
            return float(np.mean(values)) if values else None

        table.append(
            {
                "name": name,
                "sites": len(members),
                "coverage": sum(m["coverage"] for m in members),
                "coverage_per_million": mean("coverage_per_million"),
                "wps_long_centre": mean("wps_long_centre"),
                "wps_short_centre": mean("wps_short_centre"),
                "wps_long_adjusted_centre": mean("wps_long_adjusted_centre"),
            }
        )
    return table


def write_track(
    path: str | os.PathLike, pieces: list[tuple[str, int, np.ndarray]], contig_lengths: dict[str, int]
) -> Path:
    """Per-base values of the site windows as bigWig (where windows overlap, the first site's
    values), each run of equal values one entry where runs are long."""
    from plasmacount.tracks import open_bigwig

    order = {name: i for i, name in enumerate(contig_lengths)}
    pieces = sorted(pieces, key=lambda piece: (order[piece[0]], piece[1]))
    with open_bigwig(path, list(contig_lengths.items())) as handle:
        covered: dict[str, int] = {}
        for chrom, first, values in pieces:
            skip = max(0, covered.get(chrom, 0) - first)
            if skip >= values.size:
                continue
            # Runs of equal values as one entry each: the same value at every base, and the
            # scores, flat over most of a window, write (and their zoom levels build) several times faster.
            kept = np.ascontiguousarray(values[skip:], dtype=np.float64)
            change = np.flatnonzero(kept[1:] != kept[:-1]) + 1
            offset = int(first + skip)
            if change.size > kept.size // 4:  # dense data change almost every base: one value per base is cheaper
                handle.addEntries(chrom, offset, values=kept, span=1, step=1)
            else:
                starts = np.concatenate([[0], change])
                ends = np.concatenate([change, [kept.size]])
                handle.addEntries(
                    [chrom] * starts.size,
                    (starts + offset).astype(np.int64),
                    ends=(ends + offset).astype(np.int64),
                    values=kept[starts],
                )
            covered[chrom] = first + values.size
    return Path(path)


def site_end_motifs(
    fragments: dict[str, ContigFragments], sites: list[Site], fasta: str | os.PathLike, k: int
) -> list[np.ndarray]:
    """Per site, the k-mer counts of both 5' ends of the fragments whose midpoint lies in the site
    (the site as given, not its 5 kb window), read from the FASTA (see `motifs`)."""
    import pysam

    from plasmacount.motifs import base_codes, count_end_kmers

    result = []
    codes_of: dict[str, np.ndarray] = {}
    empty = ContigFragments(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool))
    with pysam.FastaFile(str(fasta)) as reference:
        for site in sites:
            counts = np.zeros(4**k, dtype=np.int64)
            on = fragments.get(site.chrom, empty)
            near, inside = on.midpoint_mask(site.start, site.end)
            if inside.any():
                if site.chrom not in codes_of:
                    if site.chrom not in reference.references:
                        raise DataError(
                            f"{fasta}: has no {site.chrom}, where interval {site.name} lies; pass the FASTA the data were aligned to"
                        )
                    codes_of = {site.chrom: base_codes(reference.fetch(site.chrom))}  # one contig held at a time
                count_end_kmers(codes_of[site.chrom], on.start[near][inside], on.end[near][inside], k, counts)
            result.append(counts)
    return result
