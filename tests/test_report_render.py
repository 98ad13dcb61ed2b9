"""The committed report rendered in headless Chromium, as a reader at a 1,400-px window sees it."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BROWSER = shutil.which("chromium-headless-shell") or shutil.which("chromium")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(BROWSER is None, reason="no headless Chromium (apt-get install chromium-headless-shell)")]

# Runs in the page once it has loaded; its JSON is printed into the DOM that --dump-dom returns.
PROBE = """
<script>window.addEventListener("load", () => {
  const top = name => { const h = [...document.querySelectorAll("h2")].find(e => e.textContent.trim() === name);
                        return h ? h.getBoundingClientRect().top + window.scrollY : null; };
  const table = document.querySelector("table");
  const images = [...document.images].map(i => ({src: i.src.slice(0, 22), natural: i.naturalWidth, shown: i.width}));
  const probe = document.createElement("pre");
  probe.id = "probe";
  probe.textContent = JSON.stringify({answers: top("Answers"), accuracy: top("Exact accuracy"),
                                      table_bottom: table ? table.getBoundingClientRect().bottom + window.scrollY : null,
                                      images, width: document.documentElement.scrollWidth});
  document.body.appendChild(probe);
});</script>
"""


@pytest.mark.parametrize("report", ["reports/index.html", "reports/positive-control/index.html"])
def test_the_first_screen_holds_the_answers_and_the_table_and_every_figure_loads(report, tmp_path):
    page = tmp_path / "page.html"
    page.write_text((ROOT / report).read_text().replace("</body>", PROBE + "</body>"))
    dom = subprocess.run([BROWSER, "--no-sandbox", "--disable-gpu", "--headless", "--window-size=1400,1800",
                          "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    probe = json.loads(dom.split('<pre id="probe">', 1)[1].split("</pre>", 1)[0].replace("&quot;", '"'))
    assert probe["answers"] is not None and probe["answers"] < probe["accuracy"] < 1800
    assert probe["table_bottom"] < 1800, probe   # the whole pivot table is on the first screen
    assert probe["images"], "no figures"
    assert all(image["src"].startswith("data:image/") and image["natural"] > 0 for image in probe["images"])
    assert all(image["shown"] <= 1400 for image in probe["images"]) and probe["width"] <= 1400
