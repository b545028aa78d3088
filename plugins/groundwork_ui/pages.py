"""HTML of the groundwork UI: the index list and one index's versions, from :mod:`groundwork_ui.state` dicts.

Plain server-rendered HTML, every value escaped. The only script is the rollback form's: it
triggers the ``groundwork_rollback`` DAG through Airflow's REST API from the browser, with the
user's own session (the ``_token`` cookie the Airflow UI set), so Airflow's own permission
checks apply; it then follows the run and reloads the page when it succeeded. The page runs in
the Airflow UI's sandboxed iframe, where ``prompt()``/``confirm()`` are blocked: the reason is a
required field of the form instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import quote

__all__ = ["Links", "error_page", "index_page", "list_page"]

ROLLBACK_DAG = "groundwork_rollback"


def _e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def _q(value: str) -> str:
    return quote(value, safe="")


@dataclass(frozen=True)
class Links:
    """Where things are, as seen by this request: the plugin's base path and Airflow's REST API."""

    base: str  # e.g. "/groundwork" (no trailing slash; "" when the app is not mounted)
    api_v2: str  # e.g. "/api/v2"

    def home(self) -> str:
        return f"{self.base}/"

    def index(self, index: str) -> str:
        return f"{self.base}/indexes/{_q(index)}"

    def data_docs(self, index: str, version: str) -> str:
        return f"{self.base}/indexes/{_q(index)}/versions/{_q(version)}/data-docs/index.html"

    def api_indexes(self) -> str:
        return f"{self.base}/api/indexes"

    def api_index(self, index: str) -> str:
        return f"{self.base}/api/indexes/{_q(index)}"

    def api_versions(self, index: str) -> str:
        return f"{self.base}/api/indexes/{_q(index)}/versions"


_HERE = Path(__file__).parent
_CSS = (_HERE / "style.css").read_text(encoding="utf-8")
_SCRIPT = (_HERE / "rollback.js").read_text(encoding="utf-8")


def _page(title: str, crumbs: str, content: str, *, nonce: str, data: dict[str, str] | None = None,
          script: bool = False, user: str | None = None) -> str:  # fmt: skip
    attrs = "".join(f' data-{k}="{_e(v)}"' for k, v in (data or {}).items())
    who = f" · signed in as {_e(user)}" if user else ""
    js = f'<script nonce="{_e(nonce)}">{_SCRIPT}</script>' if script else ""
    return (
        "<!doctype html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{_e(title)} · groundwork</title>'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<style nonce="{_e(nonce)}">{_CSS}</style></head>'
        f'<body{attrs}><div class="crumbs">{crumbs}{who}</div>{content}'
        "<footer>groundwork reads this from the index files, the version manifests, live.json, pin.json and "
        "audit.jsonl; it never opens the vector store from here.</footer>"
        f"{js}</body></html>"
    )


def _badge(text: str, kind: str, title: str | None = None) -> str:
    tip = f' title="{_e(title)}"' if title else ""
    return f'<span class="badge {kind}"{tip}>{_e(text)}</span>'


_GATE_KIND = {"passed": "ok", "forced": "warn", "rejected": "bad", "disabled": "neutral", "unchecked": "neutral"}
_EVAL_KIND = {"passed": "ok", "forced": "warn", "regressed": "bad"}
_METRIC_ORDER = ("hit", "recall", "mrr", "ndcg")


def _when(iso: str | None) -> str:
    """``2026-11-25T18:30:00.123+00:00`` -> ``2026-11-25 18:30:00 UTC`` (as stored: UTC)."""
    if not iso:
        return ""
    text = str(iso).replace("T", " ")
    text = text.split(".")[0].split("+")[0].removesuffix("Z")
    return f"{text} UTC"


def _metrics(evaluation: dict[str, Any] | None, golden: bool, *, compact: bool = False) -> str:
    if not evaluation:
        why = "not evaluated" if golden else "no golden queries"
        return f'<span class="muted">{why}</span>'
    k = evaluation.get("k")
    metrics = evaluation["metrics"]
    order = [m for m in _METRIC_ORDER if m in metrics] + sorted(set(metrics) - set(_METRIC_ORDER))
    parts = [f"{_e(m)}@{_e(k)} {float(metrics[m]):.3f}" for m in order if isinstance(metrics[m], int | float)]
    badge = _badge(evaluation["verdict"], _EVAL_KIND.get(evaluation["verdict"], "neutral"))
    if compact:
        return f'{badge} <span class="mono">{" · ".join(parts)}</span>'
    text = f'{badge}<br><span class="mono">{"<br>".join(parts)}</span>'
    if evaluation.get("live_version"):
        text += f"<br><small>against live {_e(evaluation['live_version'])}</small>"
    if evaluation.get("regressions"):
        text += '<ul class="tight">' + "".join(f"<li>{_e(r)}</li>" for r in evaluation["regressions"]) + "</ul>"
    if evaluation.get("reason"):
        text += f"<br><small>forced: {_e(evaluation['reason'])}</small>"
    return text


def _pin_text(pin: dict[str, Any]) -> str:
    return f"pinned to <code>{_e(pin.get('version'))}</code>" + (
        f" since {_e(_when(pin.get('at')))}" if pin.get("at") else ""
    ) + (f": “{_e(pin.get('reason'))}”" if pin.get("reason") else "")  # fmt: skip


# -- the index list -------------------------------------------------------------------------------


def list_page(indexes: list[dict[str, Any]], links: Links, *, nonce: str, user: str | None,
              indexes_dir: str) -> str:  # fmt: skip
    rows = []
    for ix in indexes:
        name = ix["index"]
        head = f'<a href="{_e(links.index(name))}"><strong>{_e(name)}</strong></a>'
        if ix.get("description"):
            head += f"<br><small>{_e(ix['description'])}</small>"
        if ix.get("error"):
            head += f'<br><small class="bad">index file invalid: {_e(ix["error"])}</small>'
        live = ix.get("live")
        live_cell = (
            f"<code>{_e(live['version'])}</code><br><small>since {_e(_when(live.get('moved_at')))}</small>"
            if live
            else '<span class="muted">none yet</span>'
        )
        if ix.get("live_error"):
            live_cell += f'<br><small class="bad">{_e(ix["live_error"])}</small>'
        pin = ix.get("pin")
        pin_cell = _badge("pinned", "warn") + f"<br><small>{_pin_text(pin)}</small>" if pin else "no"
        latest = ix.get("latest")
        if latest:
            gate = latest["gate"]
            last = (
                f"<code>{_e(latest['version'])}</code> <small>{_e(latest['trigger'])}, "
                f"{_e(_when(latest['created_at']))}</small><br>gate {_badge(gate, _GATE_KIND.get(gate, 'neutral'))}"
                f" evaluation {_metrics(latest['evaluation'], latest['golden_queries'], compact=True)}"
            )
        else:
            last = '<span class="muted">never built</span>'
        schedule = _e(ix.get("schedule") or "none")
        rows.append(
            f"<tr><td>{head}</td><td>{live_cell}</td><td>{ix['version_count']}</td><td>{pin_cell}</td>"
            f"<td>{last}</td><td><code>{schedule}</code></td></tr>"
        )
    table = (
        "<table><thead><tr><th>Index</th><th>Live version</th><th>Versions</th><th>Pinned</th>"
        "<th>Last version built</th><th>Schedule</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
        if rows
        else f'<p class="muted">No index files in <code>{_e(indexes_dir)}</code>.</p>'
    )
    content = (
        "<h1>Groundwork indexes</h1>"
        f'<p class="muted">Index files in <code>{_e(indexes_dir)}</code>. '
        f'JSON: <a href="{_e(links.api_indexes())}">{_e(links.api_indexes())}</a></p>{table}'
    )
    return _page("Indexes", "groundwork", content, nonce=nonce, user=user)


# -- one index ------------------------------------------------------------------------------------


def _counts(counts: dict[str, Any], keys: tuple[str, ...]) -> str:
    detail = ", ".join(f"{counts[k]} {k}" for k in keys if counts.get(k))
    return f"<strong>{_e(counts.get('total', 0))}</strong>" + (f"<br><small>{_e(detail)}</small>" if detail else "")


def _gate_cell(row: dict[str, Any], index: str, links: Links) -> str:
    gate = row["gate"]
    text = _badge(gate["verdict"], _GATE_KIND.get(gate["verdict"], "neutral"))
    if gate["failed"]:
        items = [f"<li><code>{_e(failure)}</code></li>" for failure in gate["failed"][:6]]
        more = f"<li>… {len(gate['failed']) - 6} more</li>" if len(gate["failed"]) > 6 else ""
        text += f'<ul class="tight">{"".join(items)}{more}</ul>'
    if gate.get("reason"):
        text += f"<br><small>forced: {_e(gate['reason'])}</small>"
    if gate["data_docs"]:
        text += f'<br><a href="{_e(links.data_docs(index, row["version"]))}">Data Docs</a>'
    return text


def _rollback_cell(row: dict[str, Any]) -> str:
    if not row["rollback"]["allowed"]:
        return f'<span class="muted">{_e(row["rollback"]["why"])}</span>'
    version = _e(row["version"])
    return (
        f'<form class="rollback" data-version="{version}">'
        f'<input name="reason" required maxlength="500" placeholder="Reason (kept in the audit log)" '
        f'aria-label="Reason for rolling back to {version}">'
        f'<button type="submit">Roll back to this version</button><span class="status" role="status"></span></form>'
    )


def _version_row(row: dict[str, Any], index: str, links: Links) -> str:
    marks = (_badge("LIVE", "ok") if row.get("live") else "") + (_badge("PINNED", "warn") if row.get("pinned") else "")
    head = f"<code>{_e(row['version'])}</code> {marks}"
    if "error" in row:
        error = f'<td colspan="7" class="bad">{_e(row["error"])}</td>'
        return f'<tr id="v-{_e(row["version"])}"><td>{head}</td>{error}</tr>'
    if row.get("parent"):
        head += f"<br><small>parent {_e(row['parent'])}</small>"
    if row.get("snapshot"):
        head += f"<br><small>snapshot {_e(row['snapshot'])}</small>"
    created = (
        f"{_e(_when(row['created_at']))}<br><small>{_e(row['trigger'])} · <code>{_e(row['run_id'])}</code></small>"
    )
    if row.get("window"):
        created += f"<br><small>window {_e(row['window'].get('start'))} → {_e(row['window'].get('end'))}</small>"
    config = row["config"]
    config_cell = f"{_e(config['summary'])}<br><small>fingerprint <code>{_e(config['fingerprint'])}</code></small>"
    if config.get("overrides"):
        config_cell += f"<br><small>overrides {_e(json.dumps(config['overrides'], sort_keys=True))}</small>"
    docs = _counts(row["documents"], ("new", "changed", "deleted", "unchanged", "quarantined", "skipped"))
    if row.get("forced_delete"):
        docs += f"<br><small>deletes forced: {_e(row['forced_delete'])}</small>"
    chunks = _counts(row["chunks"], ("embedded", "carried", "reused"))
    css = ' class="live"' if row.get("live") else ""
    return (
        f'<tr{css} id="v-{_e(row["version"])}"><td class="version">{head}</td><td>{created}</td><td>{config_cell}</td>'
        f"<td>{docs}</td><td>{chunks}</td><td>{_gate_cell(row, index, links)}</td>"
        f"<td>{_metrics(row['evaluation'], row['config']['golden_queries'])}</td><td>{_rollback_cell(row)}</td></tr>"
    )


def _audit_table(audit: list[dict[str, Any]]) -> str:
    if not audit:
        return '<p class="muted">No rollback or unpin yet.</p>'
    rows = []
    for entry in audit:
        moved = ""
        if entry.get("action") == "rollback":
            moved = f"<code>{_e(entry.get('from_version') or '—')}</code> → <code>{_e(entry.get('to_version'))}</code>"
            how = "restored from DVC" if entry.get("restored_from_snapshot") else "collection kept"
            moved += f"<br><small>{_e(how)}, {_e(entry.get('points'))} points, {_e(entry.get('seconds'))} s</small>"
        rows.append(
            f"<tr><td>{_e(_when(entry.get('at')))}</td><td>{_e(entry.get('action'))}</td><td>{moved}</td>"
            f"<td>{_e(entry.get('reason'))}</td><td><code>{_e(entry.get('run_id') or '')}</code></td></tr>"
        )
    return (
        "<table><thead><tr><th>When</th><th>Action</th><th>Versions</th><th>Reason</th><th>Run</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def index_page(detail: dict[str, Any], links: Links, *, nonce: str, user: str | None) -> str:
    index = detail["index"]
    live = detail.get("live")
    facts = [
        f"live <code>{_e(live['version'])}</code> since {_e(_when(live.get('moved_at')))}"
        if live
        else "no live version yet",
        f"{detail['version_count']} version(s)",
        f"schedule <code>{_e(detail.get('schedule') or 'none')}</code>",
        f"file <code>{_e(detail['file'])}</code>",
    ]
    content = f"<h1>{_e(index)}</h1>"
    if detail.get("description"):
        content += f"<p>{_e(detail['description'])}</p>"
    content += f'<p class="muted">{" · ".join(facts)}</p>'
    if detail.get("error"):
        content += f'<div class="banner bad">The index file is invalid: {_e(detail["error"])}</div>'
    if detail.get("live_error"):
        content += f'<div class="banner bad">{_e(detail["live_error"])}</div>'
    pin = detail.get("pin")
    if pin:
        content += (
            f'<div class="banner">{_badge("pinned", "warn")} {_pin_text(pin)}. Refreshes build with that version\'s '
            f"config until an operator runs <code>groundwork unpin {_e(index)}</code> or the index file changes.</div>"
        )
    rows = "".join(_version_row(row, index, links) for row in detail["versions"])
    content += (
        "<h2>Versions</h2>"
        f'<p class="muted">Rolling back triggers the <code>{ROLLBACK_DAG}</code> DAG with your Airflow session: the '
        "alias moves at once, or after the version is restored from its DVC snapshot; nothing is re-embedded.</p>"
    )
    content += (
        "<table><thead><tr><th>Version</th><th>Created</th><th>Config</th><th>Documents</th><th>Chunks</th>"
        "<th>Quality gate</th><th>Evaluation</th><th>Rollback</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
        if rows
        else '<p class="muted">No version yet: the refresh DAG has not built one.</p>'
    )
    content += "<h2>Audit log</h2>"
    if detail.get("audit_error"):
        content += f'<div class="banner bad">{_e(detail["audit_error"])}</div>'
    content += _audit_table(detail["audit"])
    content += (
        f'<p class="muted">JSON: <a href="{_e(links.api_index(index))}">{_e(links.api_index(index))}</a>, '
        f'<a href="{_e(links.api_versions(index))}">{_e(links.api_versions(index))}</a></p>'
    )
    crumbs = f'<a href="{_e(links.home())}">groundwork</a> / {_e(index)}'
    data = {"airflow-api": links.api_v2, "index": index, "dag": ROLLBACK_DAG}
    return _page(index, crumbs, content, nonce=nonce, data=data, script=True, user=user)


def error_page(title: str, message: str, links: Links, *, nonce: str) -> str:
    crumbs = f'<a href="{_e(links.home())}">groundwork</a>'
    return _page(title, crumbs, f"<h1>{_e(title)}</h1><p>{_e(message)}</p>", nonce=nonce)
