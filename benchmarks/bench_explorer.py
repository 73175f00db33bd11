"""Explorer latency: per-box metric requests against a running server, and first render.

Serves a profile with ``python build.py explore`` (a small one built in a temp dir unless
``--params`` names a built one), sends 1,000 sequential and 1,000 8-way concurrent
``GET /metrics/{image}/bbox/{i}`` requests over random selections, and reports p50 / p95 / max
latency and errors (goal: p95 < 20 ms sequential); with Chromium, the image detail's first render.
See docs/benchmarks.md. Run: ``PYTHONPATH=lib python benchmarks/bench_explorer.py [--quick]``.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2
import numpy as np
import yaml

from sightline import pipeline

ROOT = Path(__file__).resolve().parents[1]


def small_profile(tmp: Path) -> tuple[Path, Path]:
    """Two tiny models and the baselines on 24 synthetic images, built into ``tmp``."""
    params = yaml.safe_load((ROOT / "params" / "demo.yaml").read_text())
    params.update(
        profile="bench-explorer",
        dataset={"kind": "synthetic", "root": str(tmp / "data"), "n_annotated": 24, "n_pool": 0},
        models=[{"key": "dinov2", "weights": "random", "size": "tiny"},
                {"key": "siglip", "weights": "random", "size": "tiny"}],
        extraction={"batch_size": 8, "device": "cpu", "cache_dir": str(tmp / "cache")},
        finetune={**params["finetune"], "strategies": {}},  # no pool to train on
        sanity={**params["sanity"], "models": []},
    )
    path = tmp / "bench.yaml"
    path.write_text(yaml.safe_dump(params))
    pipeline.build(path, root=ROOT, report_root=tmp / "report", only=["q1_alignment"])
    return path, tmp / "report"


def requests_to_send(client: httpx2.Client, n: int, seed: int = 0) -> list[tuple[str, dict]]:
    """Random per-box selections over everything the profile holds."""
    rng = random.Random(seed)
    profile = client.get("/profile").json()
    images = client.get("/images").json()
    out = []
    for _ in range(n):
        image = rng.choice(images)
        model = rng.choice(profile["models"])
        method = rng.choice(model["variants"][0]["methods"])
        layer = rng.choice(method["layers"])
        heads = method["heads"].get(str(layer), 0)
        query = {"model": model["model"], "variant": model["variants"][0]["variant"],
                 "method": method["method"], "layer": layer,
                 "head": rng.choice([-1, *range(heads)]), "percentile": rng.choice([50, 75, 90, 95])}
        out.append((f"/metrics/{image['image_id']}/bbox/{rng.randrange(len(image['boxes']))}", query))
    return out


def timed(client: httpx2.Client, url: str, query: dict) -> tuple[float, bool]:
    start = time.perf_counter()
    try:
        ok = client.get(url, params=query).status_code == 200
    except httpx2.HTTPError:
        ok = False
    return (time.perf_counter() - start) * 1000, ok


def report(name: str, results: list[tuple[float, bool]], wall: float) -> None:
    ms, ok = map(np.array, zip(*results, strict=True))
    p50, p95 = np.percentile(ms, [50, 95])
    print(f"{name:22s} n={len(ms):5d}  p50 {p50:6.1f} ms  p95 {p95:6.1f} ms  max {ms.max():7.1f} ms  "
          f"errors {(~ok).sum()}  ({len(ms) / wall:5.0f} req/s)")


def first_render(url: str, image_id: str) -> float | None:
    """Seconds from opening the image detail to its first complete render (None: no Chromium)."""
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver_path):
        return None
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    with tempfile.TemporaryDirectory() as profile_dir:
        for argument in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                         "--no-first-run", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync",
                         f"--user-data-dir={profile_dir}"]:
            options.add_argument(argument)
        driver = webdriver.Chrome(options=options, service=Service(driver_path))
        try:
            driver.get(f"{url}/#/gallery")  # warm the browser once
            WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".card"))
            start = time.perf_counter()
            driver.get(f"{url}/?fresh=1#/image/{image_id}")
            WebDriverWait(driver, 30, poll_frequency=0.005).until(
                lambda d: d.find_element(By.ID, "view").get_attribute("data-ready"))
            return time.perf_counter() - start
        finally:
            driver.quit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="200 requests per run, not 1,000")
    parser.add_argument("--params", type=Path, help="a built profile's params (default: build one)")
    parser.add_argument("--report-dir", type=Path, help="where that profile's report is")
    args = parser.parse_args()
    n = 200 if args.quick else 1000
    with tempfile.TemporaryDirectory() as tmp:
        if args.params:
            params, report_dir = args.params, args.report_dir or ROOT / "report"
        else:
            print("building a small profile to serve ...", flush=True)
            params, report_dir = small_profile(Path(tmp))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        url = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(
            [sys.executable, str(ROOT / "build.py"), "explore", "--params", str(params),
             "--report-dir", str(report_dir), "--port", str(port), "--no-browser"],
            stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            with httpx2.Client(base_url=url, timeout=30) as client:
                for _ in range(3000):  # up to 5 min: the server imports torch, reads the profile
                    try:
                        client.get("/profile")
                        break
                    except httpx2.ConnectError:
                        if server.poll() is not None:
                            raise SystemExit(f"the explorer exited ({server.returncode}) first") from None
                        time.sleep(0.1)
                todo = requests_to_send(client, n)
                for url_, query in todo[:20]:  # warm-up: first imports, first file opens
                    client.get(url_, params=query)
                start = time.perf_counter()
                sequential = [timed(client, u, q) for u, q in todo]
                report("sequential", sequential, time.perf_counter() - start)
                start = time.perf_counter()  # one client's connection pool: 8 connections at once
                with ThreadPoolExecutor(8) as pool:
                    concurrent = list(pool.map(lambda request: timed(client, *request), todo))
                report("8-way concurrent", concurrent, time.perf_counter() - start)
            image = todo[0][0].split("/")[2]
            seconds = first_render(url, image)
            print("image detail first render: "
                  + ("no Chromium (apt-get install chromium chromium-driver)" if seconds is None
                     else f"{seconds * 1000:.0f} ms"))
        finally:
            server.terminate()
            server.wait(timeout=20)


if __name__ == "__main__":
    main()
