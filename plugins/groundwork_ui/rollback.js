(() => {
  const body = document.body, api = body.dataset.airflowApi, index = body.dataset.index, dag = body.dataset.dag;
  const say = (form, text, kind) => {
    const out = form.querySelector(".status");
    out.textContent = text;
    out.dataset.kind = kind || "";
  };
  async function call(method, path, payload) {
    const headers = {"Accept": "application/json"};
    if (payload !== undefined) headers["Content-Type"] = "application/json";
    const resp = await fetch(api + path, {method, headers, credentials: "same-origin",
      body: payload === undefined ? undefined : JSON.stringify(payload)});
    let data = null;
    try { data = await resp.json(); } catch (e) { data = null; }
    if (!resp.ok) {
      const detail = data && data.detail !== undefined
        ? (typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail)) : resp.statusText;
      throw new Error(resp.status + " " + detail);
    }
    return data;
  }
  const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  async function follow(form, runId, paused) {
    const path = "/dags/" + encodeURIComponent(dag) + "/dagRuns/" + encodeURIComponent(runId);
    const hint = paused ? " (DAG " + dag + " is paused: unpause it in Airflow and the run starts)" : "";
    for (;;) {
      await pause(2000);
      let run;
      try { run = await call("GET", path); } catch (e) {
        say(form, "run " + runId + ": cannot read its state (" + e.message + ")", "error");
        return;
      }
      if (run.state === "success") { say(form, "run " + runId + " succeeded; reloading", "ok"); location.reload(); return; }
      if (run.state === "failed") {
        say(form, "run " + runId + " failed: its task log in Airflow (DAG " + dag + ") says why", "error");
        form.querySelector("button").disabled = false;
        return;
      }
      say(form, "run " + runId + ": " + run.state + hint, paused ? "warn" : "");
    }
  }
  document.querySelectorAll("form.rollback").forEach((form) => form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const reason = form.elements.reason.value.trim();
    if (!reason) { say(form, "a reason is required: it goes to the audit log", "error"); form.elements.reason.focus(); return; }
    const version = form.dataset.version, button = form.querySelector("button");
    button.disabled = true;
    say(form, "triggering " + dag + "...", "");
    let run;
    try {
      run = await call("POST", "/dags/" + encodeURIComponent(dag) + "/dagRuns", {
        logical_date: null, conf: {index, version, reason},
        note: "groundwork UI: roll " + index + " back to " + version + ": " + reason});
    } catch (e) {
      say(form, "not triggered: " + e.message, "error");
      button.disabled = false;
      return;
    }
    let paused = false;
    try { paused = (await call("GET", "/dags/" + encodeURIComponent(dag))).is_paused === true; } catch (e) { paused = false; }
    say(form, "triggered run " + run.dag_run_id + " (" + run.state + ")", paused ? "warn" : "ok");
    follow(form, run.dag_run_id, paused);
  }));
})();
