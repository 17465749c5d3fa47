"""Issue 24, matching only: the confidence and the fitted warp on the evaluation set, fast.

For every pair of :data:`bench_geometric.LAYOUT_PAIRS` (no stylization): the round-1 matches,
their consensus share, the two chance estimates (re-paired ``null``, ``upside_down``), the
confidence, whether a face in each image decided instead, and what ``--warp`` decides; the
consensus affine (content <- style map, its singular values, aspect and rotation); and the
TPS warp that :func:`estimate_warp` fits at ``--warp-strength 0.5`` (projected and
stiffened on the output grid as the engine does): match distance before and after, mean
displacement in % of the long side, minimum Jacobian, at 256 px long side. A refused or
scaled-down pair is also fitted at the full 0.5 (``--warp-force``) to show what the warp
would have done. About 15 s per pair on one thread (5.2 minutes for the 20 on 2026-12-02,
faces included; 2.7 minutes before the faces, on a faster machine).

Usage:
    python benchmarks/bench_layout_matching.py          # prints a markdown table
    python benchmarks/bench_layout_matching.py --json   # one JSON row per pair
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_geometric import LAYOUT_PAIRS, SHARED  # noqa: E402

STRENGTH, SIZE = 0.5, 256


def consensus_affine(vgg, content, style) -> dict[str, float]:
    """Singular values, aspect (larger / smaller) and rotation (deg) of the affine
    (content <- style, normalized units) fitted to the round-1 consensus."""
    from warpaint.stn.correspond import deep_matches
    from warpaint.stn.warps import fit_affine, ransac_affine

    m = deep_matches(vgg, content, style, size=SIZE)
    keep = ransac_affine(m.a, m.b, threshold=0.25)
    if int(keep.sum()) < 3:
        return {"sv_max": float("nan"), "sv_min": float("nan"), "aspect": float("nan"), "rotation_deg": 0.0}
    a = fit_affine(m.a[keep], m.b[keep]).double()[:, :2]
    sv = torch.linalg.svdvals(a)
    rot = math.degrees(math.atan2(float(a[1, 0] - a[0, 1]), float(a[0, 0] + a[1, 1])))
    return {"sv_max": round(float(sv[0]), 3), "sv_min": round(float(sv[1]), 3),
            "aspect": round(float(sv[0] / sv[1].clamp_min(1e-9)), 2), "rotation_deg": round(rot, 1)}


def fitted(vgg, content, style, hw: tuple[int, int], *, force: bool) -> dict:
    """The warp ``estimate_warp`` fits at :data:`STRENGTH`, as the engine applies it."""
    from warpaint.stn.geostyle import estimate_warp

    geo = estimate_warp(vgg, content, style, "tps", strength=STRENGTH, size=SIZE, force=force)
    out = {"applied": geo.applied, "strength": round(geo.strength, 3), "confidence": geo.confidence}
    if geo.applied:
        geo.warp.project()
        geo.warp.stiffen(hw)
        before, after = geo.match_distance(hw)
        d = geo.warp.describe(hw)
        out.update(before_px=round(before, 2), after_px=round(after, 2),
                   fall=round(1 - after / before, 3) if before else 0.0,
                   displacement_pct=round(100 * d["mean_displacement_px"] / max(hw), 2),
                   min_jacobian=d["min_jacobian"])
    return out


def pair_row(vgg, c_rel: str, s_rel: str, label: bool) -> dict:
    from warpaint.io import fit_long_side, load_image

    content, style = load_image(SHARED.parent / c_rel), load_image(SHARED.parent / s_rel)
    hw = fit_long_side(tuple(content.shape[-2:]), SIZE)
    t0 = time.perf_counter()
    run = fitted(vgg, content, style, hw, force=False)
    conf = run.pop("confidence")
    row = {"pair": f"{Path(c_rel).stem} / {Path(s_rel).stem}", "label": label,
           **{f"conf_{k}": v for k, v in conf.as_dict().items()}, **consensus_affine(vgg, content, style),
           **run}
    if not run["applied"] or run["strength"] < STRENGTH:
        forced = fitted(vgg, content, style, hw, force=True)
        row["forced"] = {k: v for k, v in forced.items() if k not in ("confidence", "applied")}
    row["seconds"] = round(time.perf_counter() - t0, 1)
    row["right"] = right(row)
    return row


def right(row: dict) -> bool:
    """Issue 24's target for the pair: shared layout: applied and match distance -30 % or
    better; none: not applied, or mean displacement under 2 % of the long side."""
    if row["label"]:
        return bool(row["applied"]) and row.get("fall", 0.0) >= 0.30
    return not row["applied"] or row.get("displacement_pct", 0.0) < 2.0


def table(rows: list[dict]) -> list[str]:
    out = ["| pair | label | matches | consensus | null | upside down | confidence | decided by "
           "| consensus affine sv (aspect, rot) | applied (strength) | match dist before -> after "
           "| displacement | forced at 0.5 | target |", "|" + "---|" * 14]
    for r in rows:
        moved = (f"{r['before_px']} -> {r['after_px']} ({-r['fall']:+.0%})" if r["applied"] else "-")
        disp = f"{r['displacement_pct']:.1f} %" if r["applied"] else "-"
        f = r.get("forced")
        forced = "-" if f is None or "fall" not in f else f"{-f['fall']:+.0%}, {f['displacement_pct']:.1f} %"
        applied = f"yes ({r['strength']:.2f})" if r["applied"] else "no"
        up = "-" if r.get("conf_upside_down") is None else f"{r['conf_upside_down']:.3f}"
        out.append(f"| {r['pair']} | {'shared' if r['label'] else 'none'} | {r['conf_matches']} | "
                   f"{r['conf_consensus']:.3f} | {r['conf_null']:.3f} | {up} | {r['conf_value']:.3f} | "
                   f"{r['conf_decided_by']} | "
                   f"{r['sv_max']:.2f} / {r['sv_min']:.2f} ({r['aspect']}, {r['rotation_deg']}) | "
                   f"{applied} | {moved} | {disp} | {forced} | "
                   f"{'right' if r['right'] else 'WRONG'} |")
    shared = [r for r in rows if r["label"]]
    none = [r for r in rows if not r["label"]]
    out += ["", f"shared: {sum(r['applied'] for r in shared)}/{len(shared)} applied, "
            f"{sum(r['right'] for r in shared)}/{len(shared)} meet the target; none: "
            f"{sum(r['right'] for r in none)}/{len(none)} meet the target"]
    return out


def main() -> None:
    from warpaint.vgg import VGGFeatures

    torch.set_num_threads(1)
    vgg = VGGFeatures().eval()
    rows = []
    for c_rel, s_rel, label, _ in LAYOUT_PAIRS:
        rows.append(pair_row(vgg, c_rel, s_rel, label))
        if "--json" in sys.argv:
            print(json.dumps(rows[-1]), flush=True)
    print("\n".join(table(rows)))


if __name__ == "__main__":
    main()
