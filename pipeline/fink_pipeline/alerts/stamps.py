"""ZTF cutouts: the three 63x63 image stamps every ZTF alert carries, as ZTF ships them.

Each stamp is a gzipped FITS file: a primary header of 80-character cards in
2880-byte blocks, then 63x63 big-endian float32 pixels (BITPIX -32), padded to
a block. The science stamp is sky background plus noise plus the source's PSF,
the template a deeper (less noisy) image of the same sky without the
transient, the difference their difference. Float pixels with noise in every
mantissa bit compress little, as real stamps do: an alert with its three
stamps weighs 60-75 KB, like a real ZTF packet.

Making a stamp costs about a millisecond (noise, header, gzip), far more than
the rest of an alert, so each seed gets a small pool of stamp triples, made
once per process and picked per alert by brightness: generating alerts with
cutouts costs a few microseconds more per alert than without.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

SIZE = 63  # pixels on a side, as ZTF's cutouts
BLOCK = 2880  # FITS block size in bytes
CARD = 80
PSF_SIGMA_PX = 0.9  # ~2.1" FWHM at ZTF's 1.01"/px
ZERO_POINT = 26.3  # magnitude of one count per exposure (ZTF's MAGZP is ~26)
MAGNITUDE_BINS = tuple(range(14, 22))  # the pool's source brightnesses
VARIANTS = 2  # stamp triples per brightness bin
KINDS = ("sci", "ref", "diff")  # ZTF's file name suffixes: science, template, difference


@dataclass(frozen=True)
class StampTriple:
    """The three gzipped FITS stamps of one alert: science, template, difference."""

    science: bytes
    template: bytes
    difference: bytes


def _card(key: str, value: object, comment: str = "") -> bytes:
    """One 80-character header card: fixed format (values right-justified to column 30)."""
    if isinstance(value, bool):
        text = f"{'T' if value else 'F':>20}"
    elif isinstance(value, str):
        text = f"'{value.replace(chr(39), chr(39) * 2):<8}'".ljust(20)
    elif isinstance(value, float):
        text = f"{value:>20.12G}"
    else:
        text = f"{value:>20}"
    line = f"{key:<8}= {text}"
    if comment:
        line += f" / {comment}"
    return line[:CARD].ljust(CARD).encode("ascii")


def _text_card(key: str, text: str) -> bytes:
    return f"{key:<8}{text}"[:CARD].ljust(CARD).encode("ascii")


def _header(kind: str, rng: np.random.Generator, stats: tuple[float, float]) -> bytes:
    """A primary header like a ZTF cutout's: image keywords, WCS with TPV distortion, history."""
    jd = 2460400.5 + float(rng.uniform(0, 400))
    ra, dec = float(rng.uniform(0, 360)), float(rng.uniform(-30, 89))
    band = int(rng.integers(1, 3))
    cards = [
        _card("SIMPLE", True, "file does conform to FITS standard"),
        _card("BITPIX", -32, "number of bits per data pixel"),
        _card("NAXIS", 2, "number of data axes"),
        _card("NAXIS1", SIZE, "length of data axis 1"),
        _card("NAXIS2", SIZE, "length of data axis 2"),
        _card("EXTEND", True, "FITS dataset may contain extensions"),
        _card("ORIGIN", "Zwicky Transient Facility", "Data origin"),
        _card("OBSERVER", "ZTF Robotic Software", "Observer"),
        _card("INSTRUME", "ZTF/MOSAIC", "Instrument name"),
        _card("TELESCOP", "P48", "Palomar 48-inch Oschin Schmidt Telescope"),
        _card("IMGTYPE", {"sci": "object", "ref": "refimage", "diff": "difference"}[kind]),
        _card("FILTER", "ZTF_" + "gri"[band - 1], "Filter name"),
        _card("FILTERID", band, "Filter ID"),
        _card("OBSJD", jd, "[day] Julian day at start of exposure"),
        _card("EXPTIME", 30.0, "[s] Requested exposure time"),
        _card("FIELDID", int(rng.integers(200, 900)), "ZTF field ID"),
        _card("CCDID", int(rng.integers(1, 17)), "CCD ID (1..16)"),
        _card("QID", int(rng.integers(1, 5)), "Quadrant ID (1..4)"),
        _card("RCID", int(rng.integers(0, 64)), "Readout channel ID (0..63)"),
        _card("SATURATE", float(rng.uniform(45000, 60000)), "[DN] saturation level"),
        _card("GAIN", float(rng.uniform(5.5, 6.5)), "[e-/DN] gain"),
        _card("READNOI", float(rng.uniform(8, 12)), "[e-] read noise"),
        _card("SEEING", float(rng.uniform(1.6, 3.2)), "[arcsec] seeing FWHM"),
        _card("AIRMASS", float(rng.uniform(1.0, 2.0)), "Airmass at start of exposure"),
        _card("MAGZP", float(rng.normal(ZERO_POINT, 0.2)), "[mag] photometric zero point"),
        _card("MAGZPUNC", float(rng.uniform(1e-5, 1e-4)), "[mag] zero point uncertainty"),
        _card("CLRCOEFF", float(rng.normal(-0.05, 0.03)), "color coefficient"),
        _card("SKYMEAN", stats[0], "[DN] mean sky level"),
        _card("SKYSIG", stats[1], "[DN] sky noise"),
        _card("RADESYS", "ICRS", "coordinate reference system"),
        _card("EQUINOX", 2000.0, "equinox of celestial coordinates"),
        _card("CTYPE1", "RA---TPV", "TPV distortion"),
        _card("CTYPE2", "DEC--TPV", "TPV distortion"),
        _card("CUNIT1", "deg", "axis 1 unit"),
        _card("CUNIT2", "deg", "axis 2 unit"),
        _card("CRVAL1", ra, "[deg] RA at reference pixel"),
        _card("CRVAL2", dec, "[deg] Dec at reference pixel"),
        _card("CRPIX1", float(rng.uniform(-1500, 1500)), "reference pixel, axis 1"),
        _card("CRPIX2", float(rng.uniform(-1500, 1500)), "reference pixel, axis 2"),
    ]
    for a in (1, 2):
        for b in (1, 2):
            scale = 2.8e-4 if a == b else 1e-7
            cards.append(_card(f"CD{a}_{b}", float(rng.normal(scale, scale * 0.01)), "WCS matrix"))
    for axis in (1, 2):
        for term in range(40):
            value = float(rng.normal(0, 1e-3 if term else 1e-6))
            cards.append(_card(f"PV{axis}_{term}", value, "TPV distortion coefficient"))
    for prefix in ("A", "B", "AP", "BP"):  # SIP distortion of the reference image, order 4
        cards.append(_card(f"{prefix}_ORDER", 4, "SIP polynomial order"))
        for i in range(5):
            for j in range(5 - i):
                if i + j >= 2 or prefix in ("AP", "BP"):
                    value = float(rng.normal(0, 10.0 ** -(3 + 2 * (i + j))))
                    cards.append(_card(f"{prefix}_{i}_{j}", value, "SIP coefficient"))
    cards.append(_card("PROCDATE", "2024-04-02T08:12:33", "processing date (UTC)"))
    cards.append(_card("PIPELINE", "ZTF-IPAC realtime", "processing pipeline"))
    for step in range(48):
        cards.append(
            _text_card(
                "HISTORY",
                f" ztf-ipac step {step:02d}: version {rng.integers(1, 9)}."
                f"{rng.integers(0, 99)} applied on {jd + step * 1e-4:.6f}",
            )
        )
    cards.append(_text_card("END", ""))
    header = b"".join(cards)
    return header + b" " * (-len(header) % BLOCK)


def _psf(amplitude: float, dx: float, dy: float) -> np.ndarray:
    axis = np.arange(SIZE, dtype=np.float64) - SIZE // 2
    x, y = np.meshgrid(axis - dx, axis - dy)
    return amplitude * np.exp(-(x**2 + y**2) / (2 * PSF_SIGMA_PX**2))


def _fits_gz(kind: str, pixels: np.ndarray, rng: np.random.Generator) -> bytes:
    values = pixels.astype(">f4")
    stats = (float(np.median(values)), float(np.std(values)))
    data = values.tobytes()
    data += b"\0" * (-len(data) % BLOCK)
    return gzip.compress(_header(kind, rng, stats) + data, compresslevel=6, mtime=0)


def make_triple(magnitude: float, rng: np.random.Generator) -> StampTriple:
    """Stamps of a source of this magnitude on a host-like background, centred within 0.5 px."""
    flux = 10 ** (-0.4 * (magnitude - ZERO_POINT))
    amplitude = flux / (2 * np.pi * PSF_SIGMA_PX**2)
    sky, noise = float(rng.uniform(80, 250)), float(rng.uniform(8, 16))
    dx, dy = rng.uniform(-0.5, 0.5, size=2)
    host = _psf(float(rng.uniform(0, 3)) * noise, float(rng.normal(0, 3)), float(rng.normal(0, 3)))
    template = sky + host + rng.normal(0, noise / 3, (SIZE, SIZE))
    science = sky + host + _psf(amplitude, dx, dy) + rng.normal(0, noise, (SIZE, SIZE))
    difference = science - template - sky * float(rng.uniform(-0.01, 0.01))
    return StampTriple(
        science=_fits_gz("sci", science, rng),
        template=_fits_gz("ref", template, rng),
        difference=_fits_gz("diff", difference, rng),
    )


@lru_cache(maxsize=8)
def stamp_pool(seed: int) -> tuple[tuple[StampTriple, ...], ...]:
    """Per magnitude bin (MAGNITUDE_BINS), VARIANTS triples; made once per seed and process."""
    rng = np.random.default_rng([seed, 0x57A4])  # its own stream: the alerts stay the same
    return tuple(
        tuple(make_triple(m + float(rng.uniform(0, 1)), rng) for _ in range(VARIANTS))
        for m in MAGNITUDE_BINS
    )


def stamps_for(seed: int, magnitude: float, alert_id: int) -> StampTriple:
    """The pool's triple for an alert of this magnitude (deterministic for an alert id)."""
    pool = stamp_pool(seed)
    index = min(max(int(magnitude) - MAGNITUDE_BINS[0], 0), len(pool) - 1)
    return pool[index][alert_id % VARIANTS]
