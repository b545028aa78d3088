"""The operator's path through the Airflow 3 UI, in headless Chromium (Debian's ``chromium``, Playwright).

One index (``ui_docs``): documents partitioned by modification time (one per day of the last three days)
and an unpartitioned FAQ table. Unpausing the DAG makes the scheduler run yesterday's interval first;
then, in the browser:

1. log in, open the refresh DAG, and backfill the last three days from the **Backfill** dialog with
   *All Runs* and three active runs: the two missing days run, yesterday's run is run again (its document
   was edited since), and the index holds every day's documents, the edit included;
2. trigger the refresh DAG from its form: *Force re-processing*, both *Sources* picked in the multi-choice,
   *Chunking strategy* ``basic``: a new version, re-chunked, the override in its manifest;
3. trigger the rollback DAG from its form back to the version before: the alias moves back.

After each step the test reads the live collection through the Qdrant client. On a failure, a
screenshot and the page's HTML are saved in the test's temporary folder (the path is in the error).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import E2E, day

pytestmark = [pytest.mark.airflow, pytest.mark.model, pytest.mark.browser]

INDEX = "ui_docs"
DAG_ID = f"groundwork_refresh__{INDEX}"
ROLLBACK_DAG = "groundwork_rollback"
CHROMIUM = os.environ.get("GROUNDWORK_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
]  # fmt: skip
WAIT_MS = 60_000
DAYS = [day(-3), day(-2), day(-1)]
DOCS = {
    0: ("bees.md", "# Bees\n\nHoney bees live in hives and make honey from nectar."),
    1: ("volcanoes.md", "# Volcanoes\n\nMagma rises, the volcano erupts, lava flows down its flanks."),
    2: ("chess.md", "# Chess\n\nThe Sicilian Defence answers 1. e4 with c5."),
}
EDITED = "# Chess\n\nThe Sicilian Defence answers 1. e4 with c5; the Najdorf is its sharpest line."
FAQ = "q,a\nHow do I reset my password?,Use the link on the sign-in page.\nWho can see my files?,Only your team.\n"


def _write(path: Path, text: str, when: datetime) -> None:
    path.write_text(text + "\n", encoding="utf-8")
    stamp = (when + timedelta(hours=12)).timestamp()
    os.utime(path, (stamp, stamp))


@pytest.fixture(scope="module")
def chromium() -> str:
    pytest.importorskip("playwright.sync_api")
    path = CHROMIUM if os.path.isfile(CHROMIUM) else shutil.which("chromium")
    if not path:
        if os.environ.get("CI"):
            pytest.fail("chromium is required in CI (.ci/run installs it)")
        pytest.skip("no chromium on this machine (apt-get install chromium)")
    return path


@pytest.fixture
def page(chromium: str, e2e: E2E, tmp_path: Path) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1600}, base_url=e2e.airflow.base_url)
            context.set_default_timeout(WAIT_MS)
            yield context.new_page()
        finally:
            browser.close()


@contextmanager
def evidence(page: Any, folder: Path, step: str) -> Iterator[None]:
    """On a failure, keep what the browser showed: a screenshot and the HTML, named after the step."""
    try:
        yield
    except Exception as exc:
        shot, html = folder / f"{step}.png", folder / f"{step}.html"
        try:
            page.screenshot(path=str(shot), full_page=True)
            html.write_text(page.content(), encoding="utf-8")
        except Exception as inner:  # the browser itself may be gone
            shot = Path(f"(no screenshot: {inner})")
        raise AssertionError(f"UI step {step!r} failed ({exc}); screenshot {shot}, page {html}") from exc


# -- UI actions (role and text selectors; the form's fields are found by their param name) ------------


def login(page: Any, password: str) -> None:
    page.goto("/", wait_until="domcontentloaded")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("link", name="Dags").or_(page.get_by_role("button", name="Dags")).first.wait_for()


def open_trigger_dialog(page: Any, dag_id: str) -> Any:
    page.goto(f"/dags/{dag_id}", wait_until="domcontentloaded")
    page.get_by_role("button", name="Trigger Dag").click()
    dialog = page.get_by_role("dialog").first
    dialog.get_by_text("Run Parameters").wait_for()
    return dialog


def form_field(dialog: Any, param: str) -> Any:
    """The form row of a DAG param: the nearest element around its input that holds a combobox."""
    return dialog.locator(f"input[name=element_{param}]").locator("xpath=ancestor::*[.//*[@role='combobox']][1]")


def pick(page: Any, dialog: Any, param: str, *options: str) -> None:
    """Choose options of a drop-down or multi-choice param by their displayed text."""
    for option in options:
        form_field(dialog, param).get_by_role("combobox").click()
        page.get_by_role("option", name=option).click()
    dialog.get_by_role("heading").first.click()  # close the menu without closing the dialog


def set_datetime(page: Any, dialog: Any, index: int, when: datetime) -> None:
    """The Backfill dialog's From (0) and To (1) pickers take a date and a time (UTC)."""
    dialog.get_by_test_id("datetime-input").nth(index).click()
    popover = page.locator("[data-scope=popover][data-part=content][data-state=open]")
    popover.get_by_placeholder("YYYY/MM/DD").fill(when.strftime("%Y/%m/%d"))
    popover.get_by_placeholder("HH:mm").fill(when.strftime("%H:%M"))
    dialog.get_by_role("heading").first.click()
    popover.wait_for(state="hidden")


def new_run(e2e: E2E, dag_id: str, before: set[str], timeout_s: float = 60) -> str:
    """The run id that appeared since ``before`` (a UI trigger does not tell the test its id)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        fresh = [r["dag_run_id"] for r in e2e.runs(dag_id) if r["dag_run_id"] not in before]
        if fresh:
            assert len(fresh) == 1, fresh
            return str(fresh[0])
        time.sleep(1)
    raise AssertionError(f"no new run of {dag_id} within {timeout_s:.0f}s")


def wait_until(check: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(2)
    raise AssertionError(f"timed out waiting for {what}")


# -- the test ----------------------------------------------------------------------------------------------


def test_operator_backfills_triggers_and_rolls_back_in_the_ui(e2e: E2E, page: Any, tmp_path: Path) -> None:
    af = e2e.airflow
    docs = e2e.root / "ui" / "docs"
    for n, (name, text) in DOCS.items():
        _write(docs / name, text, DAYS[n])
    (e2e.root / "ui" / "faq.csv").write_text(FAQ, encoding="utf-8")
    faq = {"faq:How do I reset my password?", "faq:Who can see my files?"}
    started = time.perf_counter()
    af.wait_for_dag(DAG_ID)
    af.wait_for_dag(ROLLBACK_DAG)

    # The scheduler's first run: yesterday's interval reads yesterday's document (and the unpartitioned table).
    af.unpause(DAG_ID)
    scheduled = wait_until(lambda: [r for r in e2e.runs(DAG_ID) if r["run_type"] == "scheduled"], 120, "a run")
    af.wait_for_run(DAG_ID, scheduled[0]["dag_run_id"], timeout_s=300)
    assert scheduled[0]["data_interval_start"][:10] == f"{DAYS[2]:%Y-%m-%d}"
    assert set(e2e.docs(INDEX)) == {"docs:chess.md", *faq}
    _write(docs / "chess.md", EDITED, DAYS[2])  # edited the same day: only a re-run of that day sees it
    e2e.lap("ui: scheduled run", started)

    with evidence(page, tmp_path, "login"):
        login(page, af.password())

    # 1. Backfill the last three days, All Runs, three at once.
    started = time.perf_counter()
    with evidence(page, tmp_path, "backfill"):
        dialog = open_trigger_dialog(page, DAG_ID)
        dialog.get_by_text("Backfill", exact=True).click()
        set_datetime(page, dialog, 0, DAYS[0])
        set_datetime(page, dialog, 1, DAYS[2])
        dialog.get_by_text("All Runs", exact=True).click()
        dialog.get_by_role("spinbutton").fill("3")
        dialog.get_by_text("3 runs will be triggered").wait_for()
        dialog.get_by_role("button", name="Run Backfill").click()
        page.get_by_text("Backfill in progress").or_(page.get_by_text("Backfill generated")).first.wait_for()
    backfills = af.api("GET", "/api/v2/backfills", params={"dag_id": DAG_ID})["backfills"]
    assert len(backfills) == 1 and backfills[0]["reprocess_behavior"] == "completed"
    runs = e2e.wait_for_backfill(DAG_ID, backfills[0]["id"], count=3)
    assert sorted(r["data_interval_start"][:10] for r in runs) == [f"{d:%Y-%m-%d}" for d in DAYS]
    rerun = [r for r in runs if r["dag_run_id"] == scheduled[0]["dag_run_id"]]
    assert rerun, "All Runs re-ran yesterday's existing run"
    state = e2e.docs(INDEX)
    assert set(state) == {"docs:bees.md", "docs:volcanoes.md", "docs:chess.md", *faq}
    assert "Najdorf" in state["docs:chess.md"] and "honey from nectar" in state["docs:bees.md"]
    before_trigger = e2e.live(INDEX)
    e2e.lap("ui: backfill", started)

    # 2. Trigger with the form's options.
    started = time.perf_counter()
    known = {r["dag_run_id"] for r in e2e.runs(DAG_ID)}
    with evidence(page, tmp_path, "trigger"):
        dialog = open_trigger_dialog(page, DAG_ID)
        dialog.locator("label:has(input[name=element_force])").click()
        pick(page, dialog, "sources", "docs", "faq")
        pick(page, dialog, "chunking_strategy", "basic: fill chunks up to max_characters, ignoring titles")
        dialog.get_by_role("button", name="Trigger", exact=True).click()
        dialog.wait_for(state="hidden")
    run_id = new_run(e2e, DAG_ID, known)
    run = af.wait_for_run(DAG_ID, run_id, timeout_s=300)
    assert run["run_type"] == "manual" and run["conf"]["sources"] == ["docs", "faq"] and run["conf"]["force"]
    triggered = e2e.live(INDEX)
    assert triggered and triggered != before_trigger
    manifest = e2e.store(INDEX).manifest(triggered)
    assert manifest.overrides == {"chunking": {"strategy": "basic"}} and manifest.window is None
    assert manifest.effective_config["chunking"]["strategy"] == "basic"
    assert manifest.counts["documents"]["changed"] == 5  # forced (and re-chunked): every document
    points = e2e.points(INDEX)
    assert {p["_collection"] for p in points} == {f"{INDEX}__{triggered}"}
    assert {p["doc_id"] for p in points} == set(state)
    e2e.lap("ui: trigger", started)

    # 3. Roll back from the rollback DAG's form to the version before the override.
    started = time.perf_counter()
    known = {r["dag_run_id"] for r in e2e.runs(ROLLBACK_DAG)}
    with evidence(page, tmp_path, "rollback"):
        dialog = open_trigger_dialog(page, ROLLBACK_DAG)
        pick(page, dialog, "index", INDEX)
        dialog.locator("input[name=element_version]").fill(str(before_trigger))
        dialog.locator("input[name=element_reason]").fill("the basic chunking override was an experiment")
        dialog.get_by_role("button", name="Trigger", exact=True).click()
        dialog.wait_for(state="hidden")
    rollback_id = new_run(e2e, ROLLBACK_DAG, known)
    af.wait_for_run(ROLLBACK_DAG, rollback_id, timeout_s=180)
    assert e2e.live(INDEX) == before_trigger
    points = e2e.points(INDEX)
    assert {p["_collection"] for p in points} == {f"{INDEX}__{before_trigger}"}
    assert {p["doc_id"] for p in points} == set(state) and "Najdorf" in e2e.docs(INDEX)["docs:chess.md"]
    e2e.lap("ui: rollback", started)
