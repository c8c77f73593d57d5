/* ChargeSim scenario pages: start a run through the API, follow it by polling its JSON.
 *
 * A run's page asks GET /api/v1/scenarios/runs/{id} every second while the run is queued
 * or running (the run saves its progress once a second), and paints each charger's steps.
 * Everything shown is set as text, never as HTML. */
(function () {
  "use strict";

  const ACTIVE = ["queued", "running"];
  const POLL_MS = 1000;

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
    if (text != null) node.textContent = text;
    return node;
  }
  function seconds(value) {
    return value == null ? "–" : value.toFixed(value >= 100 ? 0 : 1) + " s";
  }
  function csrf(form) {
    return form.elements.csrfmiddlewaretoken.value;
  }
  function liveState(text, on) {
    const state = document.getElementById("live-state");
    if (!state) return;
    state.textContent = text;
    state.classList.toggle("on", on);
  }
  function badge(node, status) {
    node.textContent = status;
    node.className = "badge verdict-" + status;
  }

  // "name=value" lines; a value that reads as JSON (a number, true, a list) is that.
  function parseVariables(text) {
    const variables = {};
    for (const line of text.split("\n")) {
      const trimmed = line.trim();
      if (!trimmed) continue;
      const at = trimmed.indexOf("=");
      if (at < 1) throw new Error(`"${trimmed}" is not name=value`);
      const raw = trimmed.slice(at + 1).trim();
      let value = raw;
      try {
        value = JSON.parse(raw);
      } catch (e) {
        value = raw;
      }
      variables[trimmed.slice(0, at).trim()] = value;
    }
    return variables;
  }

  // -- the list, with the form ----------------------------------------------------------

  function listPage(api, runUrl) {
    const form = document.getElementById("start-run");
    if (form) startForm(form, api, runUrl);
    const body = document.querySelector("table.scenario-runs tbody");
    // The table is repainted from the API (never the page reloaded: the form may hold
    // a scenario being written), so runs started elsewhere show up too.
    async function poll() {
      let active = false;
      try {
        const response = await fetch(api + "?limit=50", { headers: { Accept: "application/json" } });
        if (!response.ok) throw new Error(response.status);
        liveState("live", true);
        const page = await response.json();
        active = page.items.some((run) => ACTIVE.includes(run.status));
        if (page.items.length) body.replaceChildren(...page.items.map((run) => runRow(run, runUrl)));
      } catch (e) {
        liveState("reconnecting…", false);
      }
      setTimeout(poll, active ? POLL_MS * 2 : POLL_MS * 5);
    }
    poll();
  }

  function utc(iso) {
    return iso ? new Date(iso).toISOString().replace("T", " ").slice(0, 19) : "–";
  }

  function runRow(run, runUrl) {
    const row = el("tr", { "data-run": run.id });
    const link = el("td");
    link.append(el("a", { href: runUrl + run.id + "/" }, "#" + run.id));
    const status = el("td");
    const verdict = el("span", { "data-field": "status" });
    badge(verdict, run.status);
    status.append(verdict);
    const counts = run.chargers;
    const errors = counts.error ? ` (${counts.error} error)` : "";
    row.append(
      link,
      el("td", {}, run.name),
      status,
      el("td", {}, utc(run.started)),
      el("td", { class: "num" }, seconds(run.duration)),
      el("td", { class: "num" }, `${counts.passed} / ${counts.failed}${errors} of ${counts.total}`)
    );
    return row;
  }

  function startForm(form, api, runUrl) {
    const result = document.getElementById("start-result");
    const errors = document.getElementById("start-errors");
    const source = form.elements.source;
    const library = form.elements.library;
    if (library) {
      const about = document.getElementById("case-description");
      library.addEventListener("change", () => {
        // A built-in case runs its own file: the pasted YAML is not used meanwhile.
        source.disabled = Boolean(library.value);
        const chosen = library.selectedOptions[0];
        about.textContent = (chosen && chosen.dataset.description) || "";
        about.hidden = !about.textContent;
      });
    }
    function say(text, kind) {
      result.hidden = false;
      result.className = "result " + kind;
      result.textContent = text;
    }
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      errors.replaceChildren();
      const body = {};
      try {
        body.variables = parseVariables(form.elements.variables.value);
      } catch (e) {
        say("Variables: " + e.message, "error");
        return;
      }
      if (library && library.value) body.library = library.value;
      else body.source = source.value;
      if (form.elements.seed.value !== "") body.seed = Number(form.elements.seed.value);
      if (form.elements.csms_url.value.trim()) body.csms_url = form.elements.csms_url.value.trim();
      const button = form.querySelector("button[type=submit]");
      button.disabled = true;
      say("Starting…", "pending");
      try {
        const response = await fetch(api, {
          method: "POST",
          headers: { "Content-Type": "application/json", "X-CSRFToken": csrf(form) },
          body: JSON.stringify(body),
        });
        const answer = await response.json();
        if (response.status === 202) {
          location.href = runUrl + answer.id + "/";
          return;
        }
        say(answer.detail || `The API answered ${response.status}.`, "error");
        for (const error of answer.errors || []) {
          const where = error.line != null ? `line ${error.line}, column ${error.column}` : error.field || "";
          const path = error.path ? ` (${error.path})` : "";
          errors.append(el("li", {}, `${where}${path}: ${error.message}`));
        }
      } catch (e) {
        say("Could not reach the API: " + e.message, "error");
      } finally {
        button.disabled = false;
      }
    });
  }

  // -- one run ----------------------------------------------------------------------------

  function runPage(api) {
    const status = document.getElementById("run-status");
    const holder = document.getElementById("run-chargers");
    const waiting = document.getElementById("run-waiting");
    const message = document.getElementById("run-message");
    const cancel = document.getElementById("cancel-run");
    const tables = new Map();

    if (cancel) {
      cancel.addEventListener("submit", async (event) => {
        event.preventDefault();
        const button = cancel.querySelector("button");
        button.disabled = true;
        const response = await fetch(api + "/cancel", {
          method: "POST",
          headers: { "X-CSRFToken": csrf(cancel) },
        });
        if (!response.ok) button.disabled = false;
      });
    }

    function chargerCard(charger) {
      const card = el("section", { class: "card scenario-charger" });
      const head = el("h2", {}, charger.charge_point_id + " ");
      const verdict = el("span", { class: "badge" });
      head.append(verdict);
      const note = el("p", { class: "note" });
      const wrap = el("div", { class: "table-wrap" });
      const table = el("table", { class: "fleet scenario-steps" });
      const headRow = el("tr");
      for (const title of ["Step", "Line", "Verdict", "Started", "Took", "Message"]) {
        headRow.append(el("th", {}, title));
      }
      table.append(el("thead"), el("tbody"));
      table.tHead.append(headRow);
      wrap.append(table);
      // The closes of its connection that were not the scenario's doing (the CSMS's, a
      // lost link, a keepalive ping without its pong): a run can pass with them.
      const drops = el("div", { class: "scenario-disconnects", hidden: "" });
      drops.append(el("h3", {}, "Connections the scenario did not close"), el("ul"));
      card.append(head, note, wrap, drops);
      holder.append(card);
      return { card, verdict, note, body: table.tBodies[0], drops };
    }

    function paintCharger(charger, running, total) {
      let view = tables.get(charger.charge_point_id);
      if (!view) {
        view = chargerCard(charger);
        tables.set(charger.charge_point_id, view);
      }
      const shown = running && charger.status === "passed" ? "running" : charger.status;
      badge(view.verdict, shown);
      view.card.dataset.chargePointId = charger.charge_point_id;
      view.note.textContent = charger.message || "";
      view.note.hidden = !charger.message;
      const rows = charger.steps.map((step) => {
        const row = el("tr", { "data-step": step.index, class: "step-" + step.status });
        row.append(
          el("td", {}, `steps[${step.index}] ${step.kind}`),
          el("td", { class: "num" }, step.line),
          el("td", {}, ""),
          el("td", { class: "num" }, seconds(step.started)),
          el("td", { class: "num" }, seconds(step.duration)),
          el("td", { class: "message" }, step.message || "")
        );
        // What happened during the step that it did not judge (a connection the CSMS
        // closed, say), as the JSON's notes and the JUnit's system-out say it.
        for (const text of step.notes || []) {
          row.children[5].append(el("p", { class: "step-note" }, text));
        }
        const verdict = el("span");
        badge(verdict, step.status);
        row.children[2].append(verdict);
        return row;
      });
      if (running && total != null && charger.steps.length < total && shown === "running") {
        const row = el("tr", { class: "step-pending" });
        row.append(el("td", { colspan: "6", class: "empty" }, `${total - charger.steps.length} more to go…`));
        rows.push(row);
      }
      view.body.replaceChildren(...rows);
      const drops = charger.disconnects || [];
      view.drops.hidden = drops.length === 0;
      view.drops.querySelector("ul").replaceChildren(
        ...drops.map((drop) => {
          const where = drop.step == null ? "before the first step" : `during steps[${drop.step}]`;
          return el("li", { "data-by": drop.by }, `${drop.message} (${where})`);
        })
      );
    }

    function paint(run) {
      const running = ACTIVE.includes(run.status);
      badge(status, run.status);
      const result = run.result || {};
      const chargers = result.chargers || [];
      waiting.hidden = chargers.length > 0 || !running;
      if (!running && !chargers.length) waiting.hidden = true;
      document.getElementById("run-duration").textContent = seconds(
        run.duration != null ? run.duration : result.duration
      );
      document.getElementById("run-setup").textContent = seconds(result.setup_duration);
      // While running, the progress says how many steps a charger has; once finished,
      // every charger lists every step (the ones after a failure as skipped).
      const total =
        result.steps_total != null
          ? result.steps_total
          : running
            ? null
            : Math.max(0, ...chargers.map((c) => c.steps.length));
      const done = chargers.reduce((sum, c) => sum + c.steps.length, 0);
      const planned = total != null ? total * chargers.length : null;
      document.getElementById("run-steps").textContent =
        chargers.length ? (planned != null ? `${done} of ${planned}` : String(done)) : "–";
      if (run.started) {
        document.getElementById("run-started").textContent = utc(run.started) + " UTC";
      }
      message.hidden = !run.message;
      message.textContent = run.message || "";
      for (const charger of chargers) paintCharger(charger, running, total);
      if (cancel) cancel.querySelector("button").hidden = !running;
      return running;
    }

    async function poll() {
      let running = true;
      try {
        const response = await fetch(api, { headers: { Accept: "application/json" } });
        if (!response.ok) throw new Error(response.status);
        running = paint(await response.json());
        liveState(running ? "live" : "finished", running);
      } catch (e) {
        liveState("reconnecting…", false);
      }
      if (running) setTimeout(poll, POLL_MS);
    }
    poll();
  }

  window.ChargeSimScenarios = { listPage, runPage };
})();
