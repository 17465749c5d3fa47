"""Geometric style (``--warp``): acceptance numbers, side by side in one run (by hand).

1. Recovery: the style is the content under a known transform (rotation 20 degrees and
   scale 1.2; a smooth TPS bulge), at 256 px; how close the estimate comes.
2. Real pairs: brad_pitt.jpg with picasso_selfport1907.jpg and with frida_kahlo.jpg at the
   engine's defaults (512 px), once without and once with ``--warp tps``, one after the
   other in this process: time, content and style distances of the *unwarped* result
   (``warpaint score`` at 512 px), mean distance between matched points before and after
   the warp, minimum Jacobian determinant. Pictures go to benchmarks/out/geo_*/ and, as JPEG,
   docs/images/geo_*.jpg.

3. --align-style affine against the defaults on a pair that shares a layout (two
   portraits) and one that does not (a town and an abstract painting).
4. Issue 24, the evaluation set :data:`LAYOUT_PAIRS` (10 pairs that share a layout, 10 that
   do not, labelled by eye): per pair the confidence and its components, what the faces
   showed, whether the warp was applied, match distance before and after, displacement,
   minimum Jacobian, content distance of the unwarped result (and of the run without a
   warp), time; at 256 px, one thread. Pictures of one accepted pair, one refused and one
   that faces decided go to docs/images/layout_*.jpg.
   (benchmarks/bench_layout_matching.py gives the matching and fit part alone, in about
   three minutes.)
5. Issue 24, forced: the shared-layout pairs that part 4 refused, and the no-layout pair with
   the highest confidence, again with ``--warp-force`` (what a user who knows the layout is
   shared gets, and what forcing does where it is not).

Usage:
    python benchmarks/bench_geometric.py            # all parts, one thread (about 30 minutes)
    python benchmarks/bench_geometric.py warp       # only parts 1-2 (about 9 minutes)
    python benchmarks/bench_geometric.py align      # only part 3 (the other parts kept from the JSON)
    python benchmarks/bench_geometric.py layout     # only part 4 (about 11 minutes on one thread)
    python benchmarks/bench_geometric.py forced     # only part 5, from part 4's JSON (about 3 minutes)
Results: benchmarks/results/geometric.{md,json}.
"""

from __future__ import annotations

import json
import math
import platform
import sys
import time
from pathlib import Path

import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "images"
PAIRS = [("content/brad_pitt.jpg", "style/picasso_selfport1907.jpg"),
         ("content/brad_pitt.jpg", "style/frida_kahlo.jpg")]

#: Issue 24's evaluation set, labelled by eye from the pictures before anything was measured:
#: (content, style, shares a layout?, why). Paths are relative to ../shared; "images/" are
#: the sample images, "datasets/" the photo and painting collections.
LAYOUT_PAIRS = [
    ("images/content/brad_pitt.jpg", "images/style/picasso_selfport1907.jpg", True,
     "frontal head-and-shoulders portraits"),
    ("images/content/brad_pitt.jpg", "images/style/frida_kahlo.jpg", True,
     "frontal head-and-shoulders portraits"),
    ("images/content/brad_pitt.jpg", "datasets/paintings/neuraldoodle_vangogh_self_portrait.jpg", True,
     "head-and-shoulders portraits"),
    ("datasets/photos/kodak_kodim04.jpg", "images/style/woman-with-hat-matisse.jpg", True,
     "a woman in a hat, head and shoulders"),
    ("datasets/photos/matplotlib_grace_hopper.jpg",
     "datasets/paintings/wikiphotos_027_kroyer_self_portrait.jpg", True, "head and shoulders with a hat"),
    ("datasets/photos/kodak_kodim15.jpg", "datasets/paintings/magenta_vallotton_camille_mauclair_woodcut.jpg",
     True, "close-up faces"),
    ("datasets/photos/gcompris_monuments_germany_wormsCathedral.jpg",
     "datasets/paintings/gcompris_details_vangogh_church_at_auvers.jpg", True, "a church with its tower"),
    ("datasets/photos/gcompris_details_TowerBridgeLondon.jpg",
     "datasets/paintings/hispace_monet_charing_cross_bridge.jpg", True, "a bridge across a river"),
    ("datasets/photos/sunhays80_sea_cliff_sun_bboysfsdbidrhxky.jpg",
     "datasets/paintings/neuraldoodle_monet_cliffs_etretat.jpg", True, "a cliff in the sea"),
    ("datasets/photos/sunhays80_wheat_field_sun_azmzksauruixhpsp.jpg",
     "datasets/paintings/neuralimagesynthesis_vangogh_wheat_field_with_cypresses.jpg", True,
     "a field under a sky, horizon in the upper half"),
    ("images/content/brad_pitt.jpg", "datasets/paintings/gcompris_paintings_hokusai_oiran_and_kamuro.jpg",
     False, "a face close-up with standing full figures (the issue's case)"),
    ("images/content/brad_pitt.jpg", "images/style/starry_night.jpg", False, "a portrait with a landscape"),
    ("images/content/brad_pitt.jpg", "images/style/composition_vii.jpg", False,
     "a portrait with an abstract"),
    ("images/content/brad_pitt.jpg", "images/style/seated-nude.jpg", False,
     "a portrait with a cubist full figure"),
    ("images/content/tubingen.jpg", "images/style/composition_vii.jpg", False, "a town with an abstract"),
    ("datasets/photos/kodak_kodim04.jpg", "datasets/paintings/styleswap_kandinsky_komposition_10_1939.jpg",
     False, "a portrait with an abstract"),
    ("images/content/golden_gate.jpg", "images/style/picasso_selfport1907.jpg", False,
     "a landscape with a portrait"),
    ("datasets/photos/kodak_kodim18.jpg", "datasets/paintings/neuraldoodle_vangogh_self_portrait.jpg", False,
     "a standing full figure with a head-and-shoulders portrait"),
    ("datasets/photos/sunhays80_sea_cliff_sun_bboysfsdbidrhxky.jpg", "images/style/frida_kahlo.jpg", False,
     "a landscape with a portrait"),
    ("datasets/photos/gcompris_monuments_germany_wormsCathedral.jpg",
     "datasets/paintings/titu1994_monet_water_lilies_1919.jpg", False, "a building with a pond of lilies"),
]


LAYOUT_SIZE, LAYOUT_STEPS = 256, 8     # result long side (scales 128, 256) and steps per scale


def layer_agreement(vgg, content, style) -> float:
    """Agreement of relu4_1 and relu5_1 (measured, not used): each layer's matches get their
    own affine consensus; the smaller of the two shares of one layer's matches that the
    other layer's model explains (within 0.25)."""
    from warpaint.stn.correspond import match_features, mutual_nearest
    from warpaint.stn.warps import fit_affine, ransac_affine

    fa, fb = match_features(vgg, content), match_features(vgg, style)
    per = [mutual_nearest(fa[n][0], fb[n][0]) for n in ("relu4_1", "relu5_1")]
    if min(len(m) for m in per) < 3:
        return 0.0
    models = [fit_affine(m.a[k], m.b[k]) for m in per for k in [ransac_affine(m.a, m.b, threshold=0.25)]]

    def share(theta, m) -> float:
        x = torch.cat([m.b, torch.ones(len(m), 1)], 1)
        return float(((x @ theta.T - m.a).norm(dim=1) < 0.25).float().mean())

    return min(share(models[1], per[0]), share(models[0], per[1]))


def layout_pair(engines: dict, vgg, c_rel: str, s_rel: str, label: bool) -> tuple[dict, object]:
    """One pair of the evaluation set: the warp run, and (only when the warp was applied, else
    the results are the same) the run without a warp. Returns the row and the warp Result."""
    from warpaint.io import load_image
    from warpaint.score import score

    content, style = load_image(SHARED.parent / c_rel), load_image(SHARED.parent / s_rel)
    t0 = time.perf_counter()
    res = engines["warp"].run_detailed(content, [style])
    t_warp = time.perf_counter() - t0
    hw = tuple(res.image.shape[-2:])
    geo = res.geometry.describe(hw)
    conf = geo["confidence"]
    row = {"pair": f"{Path(c_rel).stem} / {Path(s_rel).stem}", "label": label, "size": [hw[1], hw[0]],
           **{f"conf_{k}": v for k, v in conf.items()},
           "layer_agreement": round(layer_agreement(vgg, content, style), 3),
           "applied": geo["applied"], "strength": geo.get("strength", 0.0), "seconds_warp": round(t_warp, 1),
           "content_unwarped": round(score(content, style, res.unwarped, size=LAYOUT_SIZE).content, 4)}
    if geo["applied"]:
        t0 = time.perf_counter()
        plain = engines["plain"].run_detailed(content, [style])
        row["seconds_no_warp"] = round(time.perf_counter() - t0, 1)
        row["content_no_warp"] = round(score(content, style, plain.image, size=LAYOUT_SIZE).content, 4)
        before, after = geo["match_distance_before_px"], geo["match_distance_after_px"]
        row.update(matches=geo["matches"], match_distance_before_px=before, match_distance_after_px=after,
                   match_distance_fall=round(1 - after / before, 3) if before else 0.0,
                   mean_displacement_px=geo["mean_displacement_px"], min_jacobian=geo["min_jacobian"],
                   displacement_pct_long_side=round(100 * geo["mean_displacement_px"] / max(hw), 2))
    else:
        row.update(matches=geo["matches"], reason=geo["reason"], mean_displacement_px=0.0,
                   displacement_pct_long_side=0.0, content_no_warp=row["content_unwarped"])
    print(json.dumps(row), flush=True)
    return row, (content, style, res)


def layout_set() -> list[dict]:
    """Issue 24: confidence, applied or not, and the warp's effect on every pair of
    :data:`LAYOUT_PAIRS`; pictures of the :data:`PICTURED` pairs."""
    from warpaint.stn.visualize import save_warp_pictures
    from warpaint.stylize import StylizeConfig, Stylizer

    base = dict(size=LAYOUT_SIZE, min_size=LAYOUT_SIZE // 2, steps=LAYOUT_STEPS, coarse_steps=LAYOUT_STEPS,
                device="cpu", dtype="float32")
    engines = {"plain": Stylizer(StylizeConfig(**base)), "warp": Stylizer(StylizeConfig(warp="tps", **base))}
    rows = []
    for c_rel, s_rel, label, _ in LAYOUT_PAIRS:
        row, (content, style, res) = layout_pair(engines, engines["warp"].vgg, c_rel, s_rel, label)
        rows.append(row)
        tag = f"{Path(c_rel).stem}_{Path(s_rel).stem}"
        if tag in PICTURED:
            state = "applied" if row["applied"] else "refused"
            caption = (f"{row['size'][0]}x{row['size'][1]} px, {LAYOUT_STEPS}+{LAYOUT_STEPS} L-BFGS steps at "
                       f"128/256, cpu float32, 1 thread, --warp tps: {state}")
            paths = save_warp_pictures(ROOT / "benchmarks" / "out" / f"layout_{tag}", content, style,
                                       res.unwarped, res.image, res.geometry, caption=caption)
            for p in paths[:1] + paths[3:]:
                docs_jpeg(p, f"layout_{tag}_{p.stem}.jpg")
    return rows


#: The pairs whose matches and results go into docs/images (one accepted, one refused, one
#: that faces decided).
PICTURED = ("brad_pitt_picasso_selfport1907", "brad_pitt_composition_vii",
            "kodak_kodim04_woman-with-hat-matisse")


def recovery(vgg) -> dict:
    from warpaint.io import fit_long_side, load_image, resize
    from warpaint.stn.geometry import (
        affine_grid,
        base_grid,
        control_grid,
        from_pixel_transform,
        sample,
        tps_grid,
    )
    from warpaint.stn.geostyle import estimate_warp

    out = {}
    for name in ("brad_pitt", "tubingen", "golden_gate", "hoovertowernight"):
        img = load_image(SHARED / "content" / f"{name}.jpg")
        img = resize(img, fit_long_side(tuple(img.shape[-2:]), 256))
        h, w = img.shape[-2:]
        a, s = math.radians(20), 1.2
        fwd = torch.tensor([[s * math.cos(a), -s * math.sin(a), 0], [s * math.sin(a), s * math.cos(a), 0],
                            [0, 0, 1.0]], dtype=torch.float64)
        c = torch.tensor([[1, 0, (w - 1) / 2], [0, 1, (h - 1) / 2], [0, 0, 1]], dtype=torch.float64)
        theta = from_pixel_transform(torch.linalg.inv(c @ fwd @ torch.linalg.inv(c))[None].float(),
                                     (h, w), (h, w), align_corners=False)[:, :2]
        style = sample(img, affine_grid(theta, (h, w), align_corners=False), padding_mode="zeros",
                       align_corners=False)
        d = estimate_warp(vgg, img, style, "affine").warp.describe((h, w))
        ctrl = control_grid(5)
        src = ctrl * (1 - 0.35 * torch.exp(-ctrl.norm(dim=1, keepdim=True) ** 2 / 0.3))
        true = tps_grid(src[None], ctrl, (h, w), align_corners=False)
        px = torch.tensor([w / 2, h / 2])
        with torch.no_grad():
            bulged = sample(img, true, padding_mode="border", align_corners=False)
            geo = estimate_warp(vgg, img, bulged, "tps")
            err = ((geo.warp.grid((h, w)) - true) * px).norm(dim=-1)
        shift = ((true - base_grid((h, w), align_corners=False)) * px).norm(dim=-1)
        out[name] = {"size": [int(w), int(h)], "affine_rotation_deg": d["rotation_deg"],
                     "affine_scale": d["scale"], "tps_true_mean_shift_px": round(float(shift.mean()), 2),
                     "tps_mean_error_px": round(float(err.mean()), 2)}
        print(name, out[name], flush=True)
    return out


def timed_pair(engines: dict, c_rel: str, s_rel: str):
    """Load a pair from ../shared/images and run each engine on it, one after the other.

    Returns content, style, a name tag and ``{name: (Result, seconds)}``.
    """
    from warpaint.io import load_image

    content, style = load_image(SHARED / c_rel), load_image(SHARED / s_rel)
    runs = {}
    for name, engine in engines.items():
        t0 = time.perf_counter()
        res = engine.run_detailed(content, [style])
        runs[name] = (res, time.perf_counter() - t0)
    return content, style, f"{Path(c_rel).stem}_{Path(s_rel).stem}", runs


def docs_jpeg(image, name: str) -> None:
    """A small JPEG copy (quality 82) of a picture (path or tensor) in docs/images."""
    from warpaint.io import tensor_to_pil

    im = Image.open(image) if isinstance(image, Path) else tensor_to_pil(image)
    with im:
        im.convert("RGB").save(ROOT / "docs" / "images" / name, quality=82)


def real_pairs() -> list[dict]:
    from warpaint.io import save_image
    from warpaint.score import score
    from warpaint.stn.visualize import save_warp_pictures
    from warpaint.stylize import StylizeConfig, Stylizer

    rows = []
    engines = {"plain": Stylizer(StylizeConfig()), "warp": Stylizer(StylizeConfig(warp="tps"))}
    for c_rel, s_rel in PAIRS:
        content, style, tag, runs = timed_pair(engines, c_rel, s_rel)
        (base, t_plain), (res, t_warp) = runs["plain"], runs["warp"]
        hw = tuple(res.image.shape[-2:])
        geo = res.geometry.describe(hw)
        s_plain, s_warp = score(content, style, base.image), score(content, style, res.unwarped)
        s_warped_out = score(content, style, res.image)
        caption = (f"{hw[1]}x{hw[0]} px, 20/20/10 L-BFGS steps at 128/256/512, "
                   f"{engines['warp'].device.type} float32, --warp tps --warp-strength 0.5")
        pictures = save_warp_pictures(ROOT / "benchmarks" / "out" / f"geo_{tag}", content, style,
                                      res.unwarped, res.image, res.geometry, caption=caption)
        for p in pictures:
            docs_jpeg(p, f"geo_{tag}_{p.stem}.jpg")
        save_image(base.image, ROOT / "benchmarks" / "out" / f"geo_{tag}_nowarp.png")
        row = {"pair": tag, "size": [hw[1], hw[0]], "seconds_no_warp": round(t_plain, 1),
               "seconds_warp": round(t_warp, 1), "time_ratio": round(t_warp / t_plain, 3),
               "content_no_warp": round(s_plain.content, 4),
               "content_warp_unwarped": round(s_warp.content, 4),
               "content_ratio": round(s_warp.content / s_plain.content, 3),
               "style_no_warp": round(s_plain.style, 4), "style_warp_unwarped": round(s_warp.style, 4),
               "style_warp_output": round(s_warped_out.style, 4), **geo,
               "match_distance_fall": round(1 - geo["match_distance_after_px"]
                                            / geo["match_distance_before_px"], 3)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


ALIGN_PAIRS = [("content/brad_pitt.jpg", "style/picasso_selfport1907.jpg"),     # shared layout
               ("content/tubingen.jpg", "style/composition_vii.jpg")]         # none


def align_pairs() -> list[dict]:
    """--align-style affine (2 x 2 region statistics) against the defaults."""
    from warpaint.io import save_image
    from warpaint.score import score
    from warpaint.stylize import StylizeConfig, Stylizer

    rows = []
    engines = {"default": Stylizer(StylizeConfig()), "align": Stylizer(StylizeConfig(align_style="affine"))}
    for c_rel, s_rel in ALIGN_PAIRS:
        content, style, tag, outs = timed_pair(engines, c_rel, s_rel)
        a, b = outs["default"][0], outs["align"][0]
        sa, sb = score(content, style, a.image), score(content, style, b.image)
        geo = b.aligned[0].describe(tuple(b.image.shape[-2:]))
        h = a.image.shape[-2]
        small = torch.nn.functional.interpolate(content, size=(h, a.image.shape[-1]), mode="bilinear",
                                                align_corners=False, antialias=True)
        strip = torch.cat([small, a.image, b.image], -1)
        save_image(strip, ROOT / "benchmarks" / "out" / f"align_{tag}.png")
        if tag.startswith("brad_pitt"):
            docs_jpeg(strip, f"align_{tag}.jpg")
        row = {"pair": tag, "seconds_default": round(outs["default"][1], 1),
               "seconds_align": round(outs["align"][1], 1),
               "content_default": round(sa.content, 4), "content_align": round(sb.content, 4),
               "style_default": round(sa.style, 4), "style_align": round(sb.style, 4),
               "matches": geo["matches"], "rotation_deg": geo["rotation_deg"], "scale": geo["scale"]}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def forced_set(layout: list[dict]) -> list[dict]:
    """Issue 24: the shared-layout pairs of ``layout`` (part 4's rows) that were refused, and
    the no-layout pair with the highest confidence, run again with ``warp_force``."""
    from warpaint.stylize import StylizeConfig, Stylizer

    refused = {r["pair"] for r in layout if r["label"] and not r["applied"]}
    refused.add(max((r for r in layout if not r["label"]), key=lambda r: r["conf_value"])["pair"])
    base = dict(size=LAYOUT_SIZE, min_size=LAYOUT_SIZE // 2, steps=LAYOUT_STEPS, coarse_steps=LAYOUT_STEPS,
                device="cpu", dtype="float32")
    engines = {"plain": Stylizer(StylizeConfig(**base)),
               "warp": Stylizer(StylizeConfig(warp="tps", warp_force=True, **base))}
    return [layout_pair(engines, engines["warp"].vgg, c_rel, s_rel, label)[0]
            for c_rel, s_rel, label, _ in LAYOUT_PAIRS
            if f"{Path(c_rel).stem} / {Path(s_rel).stem}" in refused]


def faces_cell(r: dict) -> str:
    """What the face detector found for a row (``-``: not looked for), and whether it decided."""
    said = r.get("conf_faces")
    if not said:
        return "-"
    if r.get("conf_decided_by") == "faces":
        return "**shared: " + said.split("widths ")[-1].rstrip(")").replace(" of the long side", "") + "**"
    return said


def layout_lines(rows: list[dict], info: dict, title: str = "Does --warp know when it does not know? "
                 "(issue 24", flags: str = "--warp tps") -> list[str]:
    """The markdown table of the evaluation set (issue 24)."""
    out = ["", f"## {title}: {LAYOUT_SIZE} px long side, scales 128/256, "
           f"{LAYOUT_STEPS}+{LAYOUT_STEPS} L-BFGS steps, {flags} --warp-strength 0.5, cpu float32, "
           f"{info['threads']} thread(s))", "",
           "| pair | label | confidence | consensus | null | upside down | spread | rounds | layers "
           "| faces (decided by) | applied (strength) "
           "| match dist before -> after (px) | mean displacement (px, % long side) | min Jacobian "
           "| content unwarped / no warp | time warp / no warp (s) |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        applied = f"yes ({r['strength']:.2f})" if r["applied"] else "no"
        fall = -r.get("match_distance_fall", 0.0)
        up = "-" if r.get("conf_upside_down") is None else f"{r['conf_upside_down']:.3f}"
        moved = "-" if not r["applied"] else (f"{r['match_distance_before_px']} -> "
                                              f"{r['match_distance_after_px']} ({fall:+.0%})")
        out.append(f"| {r['pair']} | {'shared' if r['label'] else 'none'} | {r['conf_value']:.3f} | "
                   f"{r['conf_consensus']:.3f} | {r['conf_null']:.3f} | {up} | {r['conf_spread']:.2f} | "
                   f"{'-' if r['conf_rounds'] is None else format(r['conf_rounds'], '.2f')} | "
                   f"{r['layer_agreement']:.2f} | {faces_cell(r)} | {applied} | {moved} | "
                   f"{r['mean_displacement_px']:.1f} "
                   f"({r['displacement_pct_long_side']:.1f} %) | {r.get('min_jacobian', '-')} | "
                   f"{r['content_unwarped']} / {r['content_no_warp']} | {r['seconds_warp']} / "
                   f"{r.get('seconds_no_warp', '-')} |")
    return out


def old_lines(rec: dict, rows: list[dict], align: list[dict], info: dict, align_info: dict) -> list[str]:
    """The markdown tables of parts 1-3 (``info``: how parts 1-2 were run; ``align_info``: part 3)."""
    lines = [f"# Geometric style benchmark ({info['date']}, CPU, {info['threads']} threads, float32, "
             f"torch {info['torch']})", "",
             "## Recovery at 256 px (affine: rotation 20 deg, scale 1.2; TPS bulge)",
             "", "| image | rotation (deg) | scale | TPS true mean shift (px) | TPS mean error (px) |",
             "|---|---|---|---|---|"]
    for k, v in rec.items():
        lines.append(f"| {k} | {v['affine_rotation_deg']:.2f} | {v['affine_scale']:.3f} | "
                     f"{v['tps_true_mean_shift_px']:.2f} | {v['tps_mean_error_px']:.2f} |")
    lines += ["", "## Real pairs, 512 px, defaults, --warp tps (strength 0.5) vs no warp", "",
              "| pair | s no warp | s warp | time ratio | content no warp | content warp (unwarped) | ratio "
              "| style no warp | style warp (unwarped) | match dist before -> after (px) | fall "
              "| min Jacobian |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['pair']} | {r['seconds_no_warp']} | {r['seconds_warp']} | {r['time_ratio']} | "
                     f"{r['content_no_warp']} | {r['content_warp_unwarped']} | {r['content_ratio']} | "
                     f"{r['style_no_warp']} | {r['style_warp_unwarped']} | "
                     f"{r['match_distance_before_px']} -> {r['match_distance_after_px']} | "
                     f"{r['match_distance_fall']:.0%} | {r['min_jacobian']} |")
    lines += ["", f"## --align-style affine (2 x 2 regions) vs defaults, 512 px ({align_info['date']}, "
              f"{align_info['threads']} threads)", "",
              "| pair | s default | s align | content default | content align | style default | style align "
              "| matches | style turned (deg) | scale |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in align:
        lines.append(f"| {r['pair']} | {r['seconds_default']} | {r['seconds_align']} | "
                     f"{r['content_default']} | {r['content_align']} | {r['style_default']} | "
                     f"{r['style_align']} | {r['matches']} | {r['rotation_deg']} | {r['scale']} |")
    return lines


def main() -> None:
    if not SHARED.is_dir() or not (SHARED.parent / "datasets").is_dir():
        sys.exit(f"sample images not found in {SHARED} and {SHARED.parent / 'datasets'}")
    from warpaint.vgg import VGGFeatures

    torch.manual_seed(0)
    only = sys.argv[1] if len(sys.argv) > 1 else "all"
    torch.set_num_threads(1)
    info = {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
            "torch": torch.__version__, "date": time.strftime("%Y-%m-%d")}
    res_dir = ROOT / "benchmarks" / "results"
    saved = res_dir / "geometric.json"
    old = json.loads(saved.read_text()) if saved.exists() else {}
    rec = recovery(VGGFeatures()) if only in ("all", "warp") else old.get("recovery", {})
    rows = real_pairs() if only in ("all", "warp") else old.get("pairs", [])
    align = align_pairs() if only in ("all", "align") else old.get("align", [])
    layout = layout_set() if only in ("all", "layout") else old.get("layout", [])
    layout_info = info if only in ("all", "layout") else old.get("layout_info", info)
    forced = forced_set(layout) if only in ("all", "layout", "forced") else old.get("forced", [])
    forced_info = info if only in ("all", "layout", "forced") else old.get("forced_info", info)
    # when and how each part was measured: "info" is the last run of parts 1-2 ("warp")
    warp_info = info if only in ("all", "warp") else old.get("info", info)
    align_info = info if only in ("all", "align") else old.get("align_info", old.get("info", info))
    res_dir.mkdir(parents=True, exist_ok=True)
    result = {"info": warp_info, "recovery": rec, "pairs": rows, "align_info": align_info, "align": align,
              "layout_info": layout_info, "layout": layout, "forced_info": forced_info, "forced": forced}
    (res_dir / "geometric.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = (old_lines(rec, rows, align, warp_info, align_info) + layout_lines(layout, layout_info)
             + layout_lines(forced, forced_info, "Forced: the refused shared pairs and the most confident "
                            "no-layout pair (issue 24", "--warp tps --warp-force"))
    (res_dir / "geometric.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
