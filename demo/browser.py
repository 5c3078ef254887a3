"""The web app driven in headless Chromium: the steps the browser tests take, and the README screenshots.

    python -m demo.browser --url 127.0.0.1:8001 --filing ../shared/data/ixbrl/filings/J/J_10-K_2023-09-29.htm.gz

starts the app against a running server, tags an example, checks the filing and opens the status
tab, writing `docs/demo-tag.png`, `docs/demo-filing.png` and `docs/demo-status.png`. The browser is
Debian's `chromium` (`make browser` installs it), driven by Playwright; nothing is downloaded.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from client.protocol import PROTOCOLS
from demo.tagging import EXAMPLES
from server.triton import free_port, wait_until

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
VIEWPORT = {"width": 1280, "height": 900}
# Gradio shows a status tracker over each output while an event runs and hides it when done.
IDLE_JS = "() => document.querySelectorAll('[data-testid=\"status-tracker\"]:not(.hide)').length === 0"


@contextmanager
def running_app(url: str, protocol: str, log: Path, timeout: float = 60.0) -> Iterator[str]:
    """`python -m demo` against the server at `url`, on a free port; yields the page's address once it answers."""
    port = free_port()
    base = f"http://127.0.0.1:{port}/"
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "demo", "--url", url, "--protocol", protocol,
                                    "--port", str(port)], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        def up() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"the app exited on start; its output:\n{log.read_text()[-3000:]}")
            return answers(base)

        if wait_until(up, timeout, 0.3) is None:
            raise RuntimeError(f"the app did not start on {base}; its output:\n{log.read_text()[-3000:]}")
        yield base
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def answers(base: str) -> bool:
    try:
        with urllib.request.urlopen(base, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@contextmanager
def chromium():
    """A headless Chromium (the system's, never one Playwright would download)."""
    if not CHROMIUM.exists():
        raise RuntimeError(f"{CHROMIUM} not found: run `make browser` (installs Debian's chromium package)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


def open_app(browser, base: str):
    """A new page on the app, loaded and idle (the status tab's first check done)."""
    page = browser.new_page(viewport=VIEWPORT)
    page.goto(base)
    page.wait_for_selector("#tag-input textarea")
    wait_idle(page)
    return page


def wait_idle(page, timeout_s: float = 60.0) -> None:
    page.wait_for_function(IDLE_JS, timeout=timeout_s * 1000)


def open_tab(page, name: str) -> None:
    """Select the tab; a tab's outputs render when first shown, the app's first status check among them."""
    page.get_by_role("tab", name=name).click()
    wait_idle(page)


def tag_example(page, example) -> None:
    """Click the button of `example` (one of `EXAMPLES`), then Tag, and wait for the answer."""
    open_tab(page, "Tag text")
    page.get_by_role("button", name=example.button, exact=True).click()
    page.wait_for_function("t => document.querySelector('#tag-input textarea').value === t", arg=example.text)
    click_and_wait(page, "#tag-button")


def tag_text(page, text: str) -> None:
    open_tab(page, "Tag text")
    page.fill("#tag-input textarea", text)
    click_and_wait(page, "#tag-button")


def check_filing(page, path: Path, timeout_s: float = 300.0) -> None:
    """Upload `path` in the filing tab and run the check (a real 10-K takes up to a minute here)."""
    open_tab(page, "Check a filing")
    upload(page, path)
    page.wait_for_selector(f'#filing-upload td.filename[aria-label="{path.name}"]')
    click_and_wait(page, "#filing-button", timeout_s)


def upload(page, path: Path) -> None:
    """Put `path` in the filing picker, replacing the file already there."""
    clear = page.locator("#filing-upload button[aria-label='Clear']")
    if clear.count():
        clear.click()
    page.set_input_files("#filing-upload input[type=file]", str(path))


def refresh_status(page) -> None:
    open_tab(page, "Server status")
    click_and_wait(page, "#status-button")


def click_and_wait(page, selector: str, timeout_s: float = 60.0) -> None:
    page.click(selector)
    wait_idle(page, timeout_s)


def screenshots(url: str, protocol: str, filing: Path, out: Path) -> float:
    """Write the three README screenshots into `out`; returns the filing check's seconds (browser wall time)."""
    out.mkdir(parents=True, exist_ok=True)
    with running_app(url, protocol, out / "demo-app.log") as base, chromium() as browser:
        page = open_app(browser, base)
        tag_example(page, EXAMPLES[2])
        page.screenshot(path=str(out / "demo-tag.png"), full_page=True)
        started = time.monotonic()
        check_filing(page, filing)
        seconds = time.monotonic() - started
        page.screenshot(path=str(out / "demo-filing.png"), full_page=True)
        refresh_status(page)
        page.screenshot(path=str(out / "demo-status.png"), full_page=True)
    (out / "demo-app.log").unlink()
    return seconds


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m demo.browser", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True, help="the running server's host:port")
    p.add_argument("--protocol", choices=PROTOCOLS, default="grpc")
    p.add_argument("--filing", type=Path, required=True, help="an inline-XBRL 10-K or 10-Q to check")
    p.add_argument("--out", type=Path, default=ROOT / "docs")
    args = p.parse_args(argv)
    seconds = screenshots(args.url, args.protocol, args.filing, args.out)
    print(f"screenshots in {args.out}; {args.filing.name} checked in {seconds:.1f} s (in the browser)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
