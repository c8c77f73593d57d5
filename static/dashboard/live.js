/* ChargeSim dashboard: one WebSocket per page, updates applied once per animation frame.
 *
 * The engine sends whole snapshots of a charger (never deltas), at most a few a second per
 * charger; we keep only the latest per charger and paint them in the next frame, so a busy
 * fleet cannot flood the page. */
(function () {
  "use strict";

  const ChargeSim = (window.ChargeSim = {});
  const LOG_ROWS = 500;
  const CHART_POINTS = 7200;
  // Characters of a logged frame shown before "show all".
  const LOG_TEXT_SHOWN = 2000;
  // The direction of a log entry that stands for frames the server left out.
  const SKIPPED = "skipped";

  // -- small helpers ---------------------------------------------------------------------

  function kw(watts) {
    return watts == null ? "–" : (watts / 1000).toFixed(watts >= 100000 ? 0 : 1);
  }
  function pct(value) {
    return value == null ? "–" : value.toFixed(value >= 99.95 ? 0 : 1);
  }
  function setText(el, text) {
    if (el && el.textContent !== text) el.textContent = text;
  }
  function setStatus(el, status) {
    if (!el) return;
    setText(el, status);
    el.className = el.className.replace(/\bstatus-\S+/g, "").trim() + " status-" + status.toLowerCase().replace(/\s+/g, "-");
  }
  // -- countdowns: a deadline from the engine, shown in seconds left, every second ------

  const countdowns = new Map(); // element -> {until, skew, render}
  let ticker = null;
  function secondsLeft(c) {
    return Math.max(0, Math.ceil(c.until - (Date.now() / 1000 + c.skew)));
  }
  function tick() {
    countdowns.forEach(function (c, el) {
      if (!el.isConnected) countdowns.delete(el);
      else setText(el, c.render(secondsLeft(c)));
    });
  }
  // Show `render(seconds left until `until`)` in `el` now and every second; `at` is the
  // engine's time when it sent the deadline (so that the two clocks need not agree).
  // With `until` null the element's countdown ends (the caller sets its text).
  function countdown(el, until, at, render) {
    if (!el) return;
    if (until == null) {
      countdowns.delete(el);
      return;
    }
    const c = { until: until, skew: at - Date.now() / 1000, render: render };
    countdowns.set(el, c);
    setText(el, render(secondsLeft(c)));
    if (!ticker) ticker = setInterval(tick, 1000);
  }
  // Times as a page tells them: 24-hour, in one zone. One rule for every page: a page
  // about one site (a charger's, a location's) tells them in that site's zone (its chart,
  // log, transactions, events and its "Not live since" alike); a page about many sites
  // (the fleet, the locations) in the browser's. A time standing alone in a sentence
  // names its zone (`name`). `zone`: an IANA name, or null (or one this browser does not
  // know) for the browser's own.
  function zoneClock(zone) {
    const options = {
      year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23",
    };
    let format;
    try {
      format = new Intl.DateTimeFormat("en-GB", Object.assign({ timeZone: zone || undefined }, options));
    } catch (error) {
      format = new Intl.DateTimeFormat("en-GB", options);
    }
    const name = format.resolvedOptions().timeZone || "UTC";
    function parts(epoch) {
      const found = {};
      format.formatToParts(new Date(epoch * 1000)).forEach(function (p) { found[p.type] = p.value; });
      return found;
    }
    return {
      name: name,
      time: function (epoch) { const p = parts(epoch); return p.hour + ":" + p.minute + ":" + p.second; },
      minutes: function (epoch) { const p = parts(epoch); return p.hour + ":" + p.minute; },
      date: function (epoch) { const p = parts(epoch); return p.year + "-" + p.month + "-" + p.day; },
      // An ISO 8601 time from the engine (UTC), or the text as it is if it does not parse.
      iso: function (text) {
        const ms = Date.parse(text);
        if (isNaN(ms)) return text;
        const p = parts(ms / 1000);
        return p.year + "-" + p.month + "-" + p.day + " " + p.hour + ":" + p.minute + ":" + p.second;
      },
    };
  }
  let pageClock = zoneClock(null);
  function clock(epoch) {
    return pageClock.time(epoch);
  }

  // Why the charger is offline; a network cut counts down to its end.
  function linkReason(snap, seconds) {
    const error = snap.link_error || "";
    // The cut is over (reconnecting): its count is no longer true.
    if (snap.offline_until == null) return error.replace(/ ?\(\d+ s left\)/, " (over)");
    const left = seconds > 0 ? "(" + seconds + " s left)" : "(ending now)";
    return /\(\d+ s left\)/.test(error) ? error.replace(/\(\d+ s left\)/, left) : error + " " + left;
  }
  function linkText(snap) {
    if (snap.link === "online") return snap.boot === "Accepted" ? "online" : "online, boot " + snap.boot;
    if (snap.link === "connecting") return "connecting";
    return "offline";
  }
  // `withReason`: the badge says why it is offline (fleet rows); the charger page says it
  // once, in its own line under the title.
  function setLink(el, snap, withReason) {
    if (!el) return;
    el.dataset.link = snap.link;
    el.title = snap.link_error || "";
    const text = linkText(snap);
    if (!withReason || snap.link !== "offline" || !snap.link_error) {
      countdown(el, null);
      setText(el, text);
      return;
    }
    countdown(el, snap.offline_until, snap.at, function (seconds) {
      return text + ": " + linkReason(snap, seconds);
    });
    if (snap.offline_until == null) setText(el, text + ": " + linkReason(snap, 0));
  }

  // Keep the latest value per key; apply all of them in one animation frame.
  function batcher(apply) {
    const pending = new Map();
    let scheduled = false;
    function flush() {
      scheduled = false;
      const items = Array.from(pending.entries());
      pending.clear();
      for (const [key, value] of items) apply(key, value);
    }
    return function (key, value) {
      pending.set(key, value);
      if (!scheduled) {
        scheduled = true;
        requestAnimationFrame(flush);
      }
    };
  }

  // While the page has no live connection, what it shows is as it was when the connection
  // was lost: said above the figures, which are greyed, so that nobody reads "Charging
  // 11 kW" of a simulator that has stopped as live.
  let staleSince = null;
  // The close codes the server refuses or ends a page's socket with
  // (chargers/dashboard/consumers.py).
  const LOGGED_OUT = 4401;
  const NO_ACCESS = 4403;  // deactivated, or without the permission the page needs now
  const NOT_FOUND = 4404;
  // The page stopped reading its socket for too long (a paused tab, a slow link): the
  // server closed it rather than hold all it could not send, and the page reconnects.
  const FELL_BEHIND = 4408;
  // The web server cannot reach the channel layer (Redis): try again later.
  const LAYER_DOWN = 4503;
  const FINAL = { 4401: "logged out", 4403: "no access", 4404: "not found" };
  // `why`: the server's last message before it closed the socket, if it sent one.
  function markStale(stale, code, why) {
    const note = document.getElementById("stale-note");
    if (!stale) {
      staleSince = null;
      document.body.classList.remove("stale");
      if (note) note.hidden = true;
      return;
    }
    if (staleSince === null) staleSince = Date.now() / 1000; // the first loss's time
    document.body.classList.add("stale");
    if (note) {
      const since = "Not live since " + clock(staleSince) + " " + pageClock.name;
      note.textContent = why
        ? since + ". " + why + " The figures below are as they were then."
        : since +
        ": the figures below are as they were then " +
        (code === LOGGED_OUT
          ? "(you logged out: log in again to see them live)."
          : code === NOT_FOUND
          ? "(what this page shows no longer exists)."
          : code === FELL_BEHIND
          ? "(the page fell behind the live updates: a slow connection, or the tab was " +
            "paused). The page reconnects by itself."
          : code === LAYER_DOWN
          ? "(the web server cannot reach the channel layer, Redis). The page reconnects " +
            "by itself."
          : "(the simulator stopped, or the connection to it was lost). The page " +
            "reconnects by itself.");
      note.hidden = false;
    }
  }

  // A WebSocket that reconnects with backoff; `onOpen` runs after every (re)connect,
  // `onClose` (with the close event) after every loss of it.
  function socket(path, onMessage, onOpen, onClose) {
    const state = document.getElementById("live-state");
    let ws = null;
    let delay = 500;
    let finalCode = null; // the close code the page stopped at (FINAL), if it did
    function connect() {
      const scheme = location.protocol === "https:" ? "wss://" : "ws://";
      ws = new WebSocket(scheme + location.host + path);
      // Live from the server's hello, not from the open: a refused socket (logged out, or
      // its charger deleted) is opened only to be closed with a code that says why.
      let live = false;
      let why = null; // the server's reason for closing, said just before the close
      ws.onopen = function () {
        delay = 500;
        if (onOpen) onOpen();
      };
      ws.onmessage = function (event) {
        const message = JSON.parse(event.data);
        // The page's user may no longer watch (logged out elsewhere, deactivated): the
        // close follows, and the page says this.
        if (message.type === "access.ended") {
          why = message.message;
          return;
        }
        if (!live) {
          live = true;
          setText(state, "live");
          state && state.classList.add("on");
          markStale(false);
        }
        onMessage(message);
      };
      ws.onclose = function (event) {
        state && state.classList.remove("on");
        markStale(true, event.code, why);
        if (onClose) onClose(event);
        if (FINAL[event.code]) {
          finalCode = event.code;
          setText(state, FINAL[event.code]);
          return;  // reconnecting cannot help
        }
        setText(state, "reconnecting…");
        setTimeout(connect, delay);
        delay = Math.min(delay * 2, 10000);
      };
    }
    connect();
    return {
      send: function (message) {
        if (ws && ws.readyState === WebSocket.OPEN) {
          ws.send(JSON.stringify(message));
          return true;
        }
        return false;
      },
      // Why the page stopped for good (LOGGED_OUT, NO_ACCESS, NOT_FOUND), or null.
      ended: function () { return finalCode; },
    };
  }

  // -- counts (fleet and location pages) -------------------------------------------------

  function paintCounts(summary) {
    const statuses = summary.statuses || {};
    document.querySelectorAll("[data-count]").forEach(function (el) {
      setText(el.querySelector("b"), String(statuses[el.dataset.count] || 0));
      el.classList.add("live");
    });
    const links = summary.links || {};
    document.querySelectorAll("[data-link-count=online]").forEach(function (el) {
      setText(el, String(links.online || 0));
    });
    document.querySelectorAll("[data-chargers]").forEach(function (el) {
      setText(el, String(summary.chargers || 0));
    });
    document.querySelectorAll("[data-total-power]").forEach(function (el) {
      setText(el, kw(summary.power_w || 0));
    });
    // A worker gone (killed, its machine down): its chargers' counts are missing, and the
    // rows it ran show their last state no longer.
    const note = document.getElementById("shards-note");
    const partial = summary.of > 1 && summary.shards < summary.of;
    if (note) {
      note.hidden = !partial;
      setText(note, partial ? partialNote(summary) : "");
    }
    (summary.unreported || []).forEach(function (pk) {
      const row = document.querySelector('tr[data-charger="' + pk + '"]');
      if (row) markNotRunning(row, "no live data");
    });
  }

  // The chargers in all come from the database: "1 of 2 chargers reporting" rather than a
  // count of the running shards' chargers alone, which read as the whole fleet.
  function partialNote(summary) {
    const missing = summary.missing_shards || [];
    if (summary.chargers_enabled == null || !missing.length) {
      return summary.shards + " of " + summary.of + " workers reporting: the counts are partial";
    }
    // Reporting, not running: a paused worker's chargers may run on unseen.
    const which = (missing.length === 1 ? "shard " : "shards ") + missing.join(", ");
    return (summary.chargers || 0) + " of " + summary.chargers_enabled + " chargers reporting (" +
      which + " not answering): the counts are partial";
  }

  // A charger taken out of the running fleet (disabled, deleted) sends a last snapshot: its
  // connectors no longer run, whatever they last did (they kept showing "Charging").
  function statusOf(snap, evse) {
    return snap.in_service === false ? "not running" : evse.status;
  }

  // -- charger rows (fleet and location pages) --------------------------------------------

  function paintRow(pk, snap) {
    const row = document.querySelector('tr[data-charger="' + pk + '"]');
    if (!row) return;
    setLink(row.querySelector("[data-field=link]"), snap, true);
    for (const evse of snap.evses) {
      const cell = row.querySelector('[data-evse="' + evse.connector_id + '"]');
      if (!cell) continue;
      setStatus(cell.querySelector("[data-field=status]"), statusOf(snap, evse));
      setText(cell.querySelector("[data-field=power]"), kw(evse.power_w) + " kW");
      setText(cell.querySelector("[data-field=soc]"), evse.soc == null ? "" : pct(evse.soc) + " %");
    }
  }

  // A charger no worker runs sends no snapshot: after this long it shows "not running"
  // (grey), not the status last checkpointed.
  const NOT_RUNNING_AFTER_MS = 5000;

  function markNotRunning(scope, why) {
    const text = why || "not running";
    const link = scope.querySelector("[data-field=link]");
    if (link) { setText(link, text); link.dataset.link = "not-running"; }
    scope.querySelectorAll("[data-field=status]").forEach(function (el) {
      setStatus(el, text);
      el.className = el.className.replace(/\bstatus-\S+/g, "").trim() + " status-not-running";
    });
    // The last power and charge level are no one's now: "22.0 kW" beside "no live data"
    // read as a charger still delivering it.
    scope.querySelectorAll("[data-field=power]").forEach(function (el) { setText(el, "–"); });
    scope.querySelectorAll("[data-field=soc]").forEach(function (el) { setText(el, ""); });
  }

  function rowsPage(path, ids, onMessage) {
    const paint = batcher(paintRow);
    const seen = new Set();
    const live = socket(
      path,
      function (message) {
        if (message.type === "charger.state") {
          seen.add(message.charger.id);
          paint(message.charger.id, message.charger);
        }
        else if (message.type === "fleet.counts") paintCounts(message);
        else if (onMessage) onMessage(message);
      },
      function () {
        live.send({ type: "watch", chargers: ids });
        setTimeout(function () {
          ids.forEach(function (pk) {
            const row = document.querySelector('tr[data-charger="' + pk + '"]');
            if (row && !seen.has(pk)) markNotRunning(row);
          });
        }, NOT_RUNNING_AFTER_MS);
      }
    );
    return live;
  }

  ChargeSim.fleetPage = function (path, ids) {
    rowsPage(path, ids, function (message) {
      // The user gained or lost "change charger" while the page is open: the bulk
      // actions follow (bulkActions), rather than have every run refused until a reload.
      if (message.type !== "access") return;
      document.dispatchEvent(new CustomEvent("chargesim:access", { detail: message.can_drive }));
      // Opened without it, the page has no bulk actions to enable: it says how to get them.
      const watchOnly = document.getElementById("watch-only");
      if (watchOnly && !document.getElementById("bulk")) {
        setText(watchOnly, message.can_drive
          ? "Your account may drive chargers now: reload the page for the bulk actions."
          : "You can watch but not drive chargers (your account lacks the 'change charger' permission).");
      }
    });
  };

  // -- bulk actions (fleet page) -----------------------------------------------------------
  //
  // The API's bulk endpoints, called with the page's session and CSRF token: the same
  // engine commands, checks and per-charger results as a script gets (nothing duplicated).

  function bulkArgs(action, form) {
    const value = function (name) { return form.elements[name].value; };
    const connector = { connector_id: Number(value("connector_id")) };
    switch (action) {
      case "plug-in": {
        const args = Object.assign({ soc: Number(value("soc")) }, connector);
        if (value("vehicle_model_id")) args.vehicle_model_id = Number(value("vehicle_model_id"));
        return args;
      }
      case "present-id-tag": return Object.assign({ id_tag: value("id_tag") }, connector);
      case "inject-fault": return Object.assign({ error_code: value("error_code") }, connector);
      case "cut-network": return { seconds: Number(value("seconds")) };
      case "connect": case "disconnect": case "reboot": return {};
      default: return connector;
    }
  }

  ChargeSim.bulkActions = function (endpoint, filterOfPage) {
    const form = document.getElementById("bulk");
    if (!form) return;
    const summary = document.getElementById("bulk-summary");
    const table = document.getElementById("bulk-results");
    const picks = function () { return Array.from(document.querySelectorAll("input[name=pick]")); };
    const chosen = function () { return picks().filter(function (p) { return p.checked; }).map(function (p) { return p.value; }); };

    function showFields() {
      const steps = form.elements.action.value.split("+");
      form.querySelectorAll("[data-for]").forEach(function (label) {
        const shown = label.dataset.for.split(" ").some(function (a) { return steps.indexOf(a) >= 0; });
        label.hidden = !shown;
        label.querySelectorAll("input, select").forEach(function (input) { input.disabled = !shown; });
      });
    }
    function countSelected() {
      setText(form.querySelector("[data-selected]"), String(chosen().length));
    }
    form.elements.action.addEventListener("change", showFields);
    document.addEventListener("chargesim:access", function (event) {
      const canDrive = !!event.detail;
      form.querySelectorAll("select, input:not([type=hidden]), button").forEach(function (el) {
        el.disabled = !canDrive || el.hasAttribute("data-stays-off");
      });
      if (canDrive) showFields(); // the fields of other actions stay off
      const note = document.getElementById("bulk-no-access");
      if (note) note.hidden = canDrive;
    });
    document.addEventListener("change", function (event) {
      if (event.target.id === "pick-all") picks().forEach(function (p) { p.checked = event.target.checked; });
      if (event.target.name === "pick" || event.target.id === "pick-all") {
        countSelected();
        if (chosen().length) form.elements.target.value = "selected";
      }
    });
    showFields();
    countSelected();

    // The API's error body in words: its detail, then each field's problem (a 422 says
    // which argument is wrong, not only that one is).
    function refusal(body, response) {
      if (!body || !body.detail) return response.status + " " + response.statusText;
      const problems = (body.errors || []).map(function (item) {
        const field = item.field ? String(item.field).replace(/^args\./, "") + ": " : "";
        return field + item.message;
      }).filter(function (text) { return text !== body.detail; });
      return problems.length ? body.detail + " " + problems.join("; ") : body.detail;
    }

    async function post(action, filter, args) {
      const response = await fetch(endpoint + action, {
        method: "POST",
        credentials: "same-origin",
        headers: {
          "Content-Type": "application/json",
          "X-CSRFToken": form.elements.csrfmiddlewaretoken.value,
        },
        body: JSON.stringify({ filter: filter, args: args }),
      });
      let body = null;
      try { body = await response.json(); } catch (e) { body = null; }
      if (!response.ok) throw new Error(refusal(body, response));
      return body;
    }

    function addRows(action, body) {
      const rows = table.tBodies[0];
      for (const item of body.results) {
        const tr = document.createElement("tr");
        const idle = item.ok && action === "pause-ev" && item.session === false;
        tr.className = idle ? "ok no-session" : item.ok ? "ok" : "failed";
        tr.dataset.charger = item.charge_point_id || "";
        const cells = [
          item.charge_point_id || "–",
          item.connector_id == null ? "–" : String(item.connector_id),
          (idle ? "⚠ " : item.ok ? "✓ " : "✗ ") + action + ": " + item.message,
          item.status || "–",
        ];
        for (const text of cells) {
          const td = document.createElement("td");
          td.textContent = text;
          tr.appendChild(td);
        }
        rows.appendChild(tr);
      }
      table.hidden = false;
    }

    form.addEventListener("submit", async function (event) {
      event.preventDefault();
      const steps = form.elements.action.value.split("+");
      let filter;
      if (form.elements.target.value === "selected") {
        const ids = chosen();
        if (!ids.length) {
          summary.className = "bulk-summary error";
          setText(summary, "✗ select chargers first (the boxes in the first column), or choose every charger of the filter");
          return;
        }
        filter = { charge_point_ids: ids };
      } else {
        filter = filterOfPage;
      }
      // One click must not reboot or stop a whole fleet: what interrupts the chargers is
      // said, with how many, and runs only once confirmed.
      const option = form.elements.action.selectedOptions[0];
      if (option.hasAttribute("data-confirm")) {
        const count = form.elements.target.value === "selected"
          ? filter.charge_point_ids.length
          : Number(form.querySelector("input[name=target][value=filter]").dataset.count);
        const chargers = count + " charger" + (count === 1 ? "" : "s");
        if (!window.confirm("Run “" + option.textContent + "” on " + chargers + "?")) {
          summary.className = "bulk-summary";
          setText(summary, "not run: " + option.textContent.toLowerCase() + " was not confirmed");
          return;
        }
      }
      const button = form.querySelector("button[type=submit]");
      button.disabled = true;
      table.tBodies[0].textContent = "";
      table.hidden = true;
      summary.className = "bulk-summary pending";
      setText(summary, "running " + steps.join(", then ") + "…");
      const lines = [];
      let failed = false;
      let doubtful = false; // a pause with no session, or shards that did not answer in time
      try {
        for (const action of steps) {
          const body = await post(action, filter, bulkArgs(action, form));
          addRows(action, body);
          const missing = body.missing_shards.length ? " (no worker for shard " + body.missing_shards.join(", ") + ")" : "";
          // Those chargers' results say "failed", yet the action may have been done before
          // their worker went away: only their state now says which.
          const goneShards = body.gone_shards || [];
          const gone = goneShards.length
            ? "; the worker" + (goneShards.length === 1 ? " of shard " : "s of shards ") + goneShards.join(", ") +
              " went away before " + (goneShards.length === 1 ? "it" : "they") + " answered: read those chargers' state"
            : "";
          // Acknowledged, then no answer within the wait: those chargers' results say
          // "timeout", yet the action may still finish; a warning, not a failure, as
          // only their state later says which.
          const unfinishedShards = body.unfinished_shards || [];
          const unfinished = unfinishedShards.length
            ? "; the worker" + (unfinishedShards.length === 1 ? " of shard " : "s of shards ") + unfinishedShards.join(", ") +
              " did not answer in time: the action may still finish, read those chargers' state"
            : "";
          const timedOut = body.results.filter(function (item) { return !item.ok && item.error === "timeout"; }).length;
          // A pause on a connector without a transaction succeeds (the car is marked
          // paused) but pauses no session: "5 of 5 succeeded" read as 5 sessions paused.
          const idle = action === "pause-ev"
            ? body.results.filter(function (item) { return item.ok && item.session === false; }).length
            : 0;
          if (idle) {
            lines.push(action + ": paused " + (body.succeeded - idle) + " of " + body.total +
              "; " + idle + " had no session" + (body.failed ? "; " + body.failed + " failed" : "") + missing + gone + unfinished);
          } else {
            lines.push(action + ": " + body.succeeded + " of " + body.total + " succeeded" + missing + gone + unfinished);
          }
          failed = failed || body.failed > timedOut;
          doubtful = doubtful || idle > 0 || unfinishedShards.length > 0;
        }
        summary.className = "bulk-summary " + (failed ? "error" : doubtful ? "warning" : "ok");
        setText(summary, (failed ? "✗ " : doubtful ? "⚠ " : "✓ ") + lines.join("; "));
      } catch (error) {
        summary.className = "bulk-summary error";
        setText(summary, "✗ " + lines.concat([error.message]).join("; "));
      } finally {
        button.disabled = false;
      }
    });
  };

  // -- location page ---------------------------------------------------------------------

  function timeChart(el, series, height) {
    if (!el || !window.uPlot) return null;
    const data = [[]].concat(series.map(function () { return []; }));
    const opts = {
      width: Math.max(el.clientWidth, 200),
      height: height || 200,
      series: [{}].concat(series),
      axes: [{}, { scale: series[0].scale, label: series[0].label }].concat(
        series.length > 1 && series[1].scale !== series[0].scale
          ? [{ scale: series[1].scale, side: 1, grid: { show: false }, label: series[1].label }]
          : []
      ),
      scales: {
        x: { time: true },
        kW: { range: function (_u, _min, max) { return [0, max > 0 ? max * 1.1 : 1]; } },
        "%": { range: [0, 100] },
      },
      legend: { live: false },
    };
    // Times in the site's zone (data-time-zone), as its arrivals and the location page
    // name them, not in the zone of whoever looks; 24-hour, the date (ISO) under the
    // first tick and under each new day's, as everywhere else on the pages.
    let zone = el.dataset.timeZone || null;
    if (zone) {
      try {
        uPlot.tzDate(new Date(), zone);
        opts.tzDate = function (ts) { return uPlot.tzDate(new Date(ts * 1e3), zone); };
        opts.axes[0] = { label: "time in " + zone, labelSize: 20 };
      } catch (error) {
        zone = null; // a zone this browser does not know: its own, rather than no chart
      }
    }
    const ticks = zoneClock(zone);
    opts.axes[0] = Object.assign(opts.axes[0], {
      values: function (_u, splits, _axis, _space, step) {
        let day = null;
        return splits.map(function (t) {
          const time = step < 60 ? ticks.time(t) : ticks.minutes(t);
          const date = ticks.date(t);
          const first = date !== day;
          day = date;
          return first ? time + "\n" + date : time;
        });
      },
    });
    const plot = new uPlot(opts, data, el);
    el.uplot = plot; // for the page's tests: the plot as drawn
    el.classList.add("empty");
    el.dataset.points = "0";
    window.addEventListener("resize", function () {
      plot.setSize({ width: Math.max(el.clientWidth, 200), height: opts.height });
    });
    return {
      push: function (t, values) {
        const n = data[0].length;
        if (n && t <= data[0][n - 1]) return; // already drawn (e.g. from the series)
        data[0].push(t);
        values.forEach(function (v, i) { data[i + 1].push(v); });
        if (data[0].length > CHART_POINTS) data.forEach(function (a) { a.shift(); });
      },
      reset: function () {
        data.forEach(function (a) { a.length = 0; });
      },
      // Replace everything with these rows: [t, value, value, ...], oldest first.
      load: function (rows) {
        data.forEach(function (a) { a.length = 0; });
        rows.forEach(function (row) {
          row.forEach(function (v, i) { data[i].push(v); });
        });
      },
      // What came before the page opened ([t, value, ...] rows, oldest first), then the
      // points already drawn that are newer than the last of them.
      before: function (rows) {
        if (!rows.length) return;
        const newest = rows[rows.length - 1][0];
        const drawn = data.map(function (a) { return a.slice(); });
        this.load(rows);
        drawn[0].forEach(function (t, j) {
          if (t > newest) drawn.forEach(function (a, i) { data[i].push(a[j]); });
        });
        while (data[0].length > CHART_POINTS) data.forEach(function (a) { a.shift(); });
      },
      last: function () {
        const n = data[0].length;
        return n ? data[0][n - 1] : null;
      },
      draw: function () {
        const n = data[0].length;
        el.classList.toggle("empty", !n);
        // What the chart holds, readable by a test or a user's script.
        el.dataset.points = String(n);
        el.dataset.from = n ? String(data[0][0]) : "";
        if (!n) {
          plot.setData(data);
          return;
        }
        plot.setData(data);
        // At least a minute wide, so that the first points do not span an odd range.
        const last = data[0][n - 1];
        plot.setScale("x", { min: Math.min(data[0][0], last - 60), max: last });
      },
    };
  }

  // A site's power against its grid limit: the bar fills up to the limit; over it, the
  // bar is full and red, and the excess is said in words.
  function paintGauge(scope, powerW, limitKw) {
    if (!scope) return;
    const gauge = scope.querySelector(".gauge");
    const over = scope.querySelector(".over");
    const kwNow = powerW / 1000;
    const isOver = limitKw != null && kwNow > limitKw;
    scope.classList.toggle("over-limit", isOver);
    if (gauge && limitKw != null) {
      const share = limitKw > 0 ? Math.min(kwNow / limitKw, 1) : (kwNow > 0 ? 1 : 0);
      gauge.querySelector(".fill").style.width = (share * 100).toFixed(1) + "%";
      gauge.setAttribute("aria-valuenow", kwNow.toFixed(1));
    }
    if (over) {
      over.hidden = !isOver;
      setText(over, isOver ? (kwNow - limitKw).toFixed(1) + " kW over the limit" : "");
    }
  }

  // The limit as the pages write it (the template's floatformat:"-1": at most one decimal).
  function limitText(limitKw) {
    return String(Math.round(limitKw * 10) / 10);
  }

  // A location's grid limit (kW, or null) and load management from a summary that carries
  // them (the engine's, after an edit in the admin): the page follows them without a
  // reload. Returns the limit to paint with.
  function followSettings(scope, summary, limitKw) {
    if (!scope || !("grid_limit_w" in summary)) return limitKw;
    const limit = summary.grid_limit_w == null ? null : summary.grid_limit_w / 1000;
    scope.dataset.limit = limit == null ? "" : String(limit);
    if (summary.load_management && limit != null) scope.dataset.loadManagement = "on";
    else delete scope.dataset.loadManagement;
    const gauge = scope.querySelector(".gauge");
    if (gauge) {
      gauge.hidden = limit == null;
      gauge.setAttribute("aria-valuemax", limit == null ? "0" : String(limit));
    }
    return limit;
  }

  ChargeSim.locationsPage = function (path) {
    const note = document.getElementById("sites-note");
    const paint = batcher(function (pk, site) {
      const row = document.querySelector('tr[data-site="' + pk + '"]');
      if (!row) return;
      const limit = followSettings(row, site, row.dataset.limit === "" ? null : Number(row.dataset.limit));
      setText(row.querySelector("[data-field=limit]"), limit == null ? "(no grid limit)" : "of " + limitText(limit) + " kW");
      setText(row.querySelector("[data-field=power]"), kw(site.power_w || 0));
      setText(row.querySelector("[data-field=charging]"), String(site.charging || 0));
      setText(row.querySelector("[data-field=online]"), String(site.online || 0));
      paintGauge(row, site.power_w || 0, limit);
      row.classList.add("live");
    });
    socket(path, function (message) {
      if (message.type === "location.power") {
        note.hidden = !(message.of > 1 && message.shards < message.of);
        setText(note, note.hidden ? "" : message.shards + " of " + message.of + " workers reporting: the figures are partial");
        paint(message.location_id, message);
      } else if (message.type === "locations.unknown") {
        note.hidden = false;
        setText(note, "No simulator worker answers: no live figures.");
      }
    });
  };

  ChargeSim.locationPage = function (path, ids, limitKw) {
    // A site's page: its times in the site's zone, as its chart (`zoneClock`).
    const siteChart = document.getElementById("site-chart");
    pageClock = zoneClock(siteChart ? siteChart.dataset.timeZone : null);
    const chart = timeChart(
      document.getElementById("site-chart"),
      [
        { label: "site power (kW)", scale: "kW", stroke: "#2563eb", width: 2, fill: "rgba(37,99,235,0.08)" },
        // A step: the limit holds until an edit changes it, it does not slide between two
        // summaries (a diagonal from 1 kW to 2.5 kW read as a limit that was 1.7 kW).
        {
          label: "grid limit (kW)", scale: "kW", stroke: "#dc2626", dash: [6, 4],
          paths: window.uPlot && uPlot.paths.stepped({ align: 1 }),
        },
      ],
      180
    );
    const paint = batcher(function (_key, summary) {
      const power = summary.power_w || 0;
      limitKw = followSettings(document.querySelector(".site-power"), summary, limitKw);
      setText(document.getElementById("site-power"), kw(power));
      // Only the facts there are, one separator between each two.
      const facts = [limitKw != null ? "of " + limitText(limitKw) + " kW grid limit" : "no grid limit"];
      facts.push((summary.charging || 0) + " charging");
      if (document.querySelector(".site-power").dataset.loadManagement) {
        facts.push("load management on: " + (summary.held_back || 0) + " held back");
      }
      if (summary.of > 1) facts.push(summary.shards + " of " + summary.of + " workers reporting");
      setText(document.getElementById("site-facts"), facts.join(" · "));
      paintGauge(document.querySelector(".site-power"), power, limitKw);
      paintCounts(summary);
      if (chart) {
        chart.push(Date.now() / 1000, [power / 1000, limitKw]);
        chart.draw();
      }
    });
    rowsPage(path, ids, function (message) {
      if (message.type === "location.power") paint("site", message);
      // The site's last hour as the workers kept it, when the socket (re)connects.
      else if (message.type === "location.history" && chart) {
        chart.before(message.points.map(function (p) {
          return [p[0], p[1] / 1000, p[2] == null ? null : p[2] / 1000];
        }));
        chart.draw();
      }
    });
  };

  // -- charger page ----------------------------------------------------------------------

  function reservationText(r) {
    const where = r.connector_id === 0 ? "any connector" : "connector " + r.connector_id;
    const group = r.parent_id_tag ? " (or group " + r.parent_id_tag + ")" : "";
    return "#" + r.reservation_id + ": " + where + " for " + r.id_tag + group + " until " + pageClock.iso(r.expiry);
  }

  // Reservations, the local list, firmware and diagnostics (text only: nothing of a CSMS's
  // values ever becomes markup).
  function paintMaintenance(snap) {
    const box = document.getElementById("maintenance");
    if (!box || snap.reservations === undefined) return;
    const field = function (name) { return box.querySelector("[data-field=" + name + "]"); };
    setText(document.querySelector("[data-field=firmware_version]"), snap.firmware_version);
    setText(field("firmware_status"), snap.firmware_status);
    paintWaiting(field("firmware_waiting"), snap);
    setText(field("diagnostics_status"), snap.diagnostics_status);
    if (snap.log_status !== undefined) {
      setText(field("log_status"), snap.log_status +
        (snap.log_request_id === null ? "" : " (request " + snap.log_request_id + ")"));
      showLines(field("security_events"), snap.security_events.length
        ? snap.security_events.map(securityEventText) : ["none"]);
    }
    setText(field("local_list"), snap.local_list_version < 0 ? "not supported"
      : "version " + snap.local_list_version + ", " + snap.local_list_size + " idTag" + (snap.local_list_size === 1 ? "" : "s"));
    setText(field("auth_cache"), snap.auth_cache_size === null ? "off (AuthorizationCacheEnabled is false)"
      : snap.auth_cache_size + " idTag" + (snap.auth_cache_size === 1 ? "" : "s"));
    const list = field("reservations");
    const lines = snap.reservations.length ? snap.reservations.map(reservationText) : ["none"];
    if (list.dataset.shown === lines.join("\n")) return;
    list.dataset.shown = lines.join("\n");
    list.replaceChildren.apply(list, lines.map(function (text) {
      const item = document.createElement("li");
      item.textContent = text;
      return item;
    }));
  }

  // What a firmware update waits for, and till when (counting down) if it is a time.
  function paintWaiting(el, snap) {
    if (!el || snap.firmware_waiting === undefined) return;
    const what = snap.firmware_waiting;
    const until = snap.firmware_waiting_until;
    el.hidden = !what;
    countdown(el, what ? until : null, snap.at, function (seconds) {
      return "(waiting: " + what + ", " + clock(until) + ", in " + seconds + " s)";
    });
    if (!what) setText(el, "");
    else if (until == null) setText(el, "(waiting: " + what + ")");
  }

  // A security event as one line: when, what, why (and whether the CSMS was told).
  function securityEventText(e) {
    return pageClock.iso(e.timestamp) + " " + e.type + (e.tech_info ? ": " + e.tech_info : "") +
      (e.sent ? "" : " (logged only)");
  }

  // A list's items as text lines, rebuilt only when they changed.
  function showLines(list, lines) {
    if (!list || list.dataset.shown === lines.join("\n")) return;
    list.dataset.shown = lines.join("\n");
    list.replaceChildren.apply(list, lines.map(function (text) {
      const item = document.createElement("li");
      item.textContent = text;
      return item;
    }));
  }

  // An idTag accepted with no vehicle: when it lapses (ConnectionTimeOut), counting down.
  function paintAuthorization(el, evse, snap) {
    if (!el) return;
    const until = evse.authorization_expires_at;
    el.hidden = until == null;
    countdown(el, until, snap.at, function (seconds) {
      return "idTag accepted, waiting for a vehicle: the authorization lapses in " + seconds +
        " s (at " + clock(until) + ", ConnectionTimeOut)";
    });
    if (until == null) setText(el, "");
  }

  // The network conditions it runs with (set by the API, a scenario, its row or this
  // page) and a cut, counting down: a slow or lossy charger looked like a healthy one.
  function paintNetwork(el, snap) {
    if (!el || !snap.network) return;
    const n = snap.network;
    const parts = [];
    if (n.latency_ms || n.jitter_ms) parts.push("latency " + n.latency_ms + " ms" + (n.jitter_ms ? " ± " + n.jitter_ms + " ms" : ""));
    if (n.drop_rate) parts.push(+(n.drop_rate * 100).toFixed(2) + " % of its frames lost");
    const text = function (seconds) {
      const cut = snap.offline_until == null ? [] : ["cut (" + (seconds > 0 ? seconds + " s left" : "ending now") + ")"];
      const all = cut.concat(parts);
      return all.length ? all.join("; ") : "normal (no latency, loss or cut)";
    };
    countdown(el, snap.offline_until, snap.at, text);
    if (snap.offline_until == null) setText(el, text(0));
  }

  // The connection's main button follows the state: Disconnect while online or
  // connecting, Connect while offline.
  function paintControls(snap) {
    const offline = snap.link === "offline";
    document.querySelectorAll("button[data-command=connect]").forEach(function (b) { b.hidden = !offline; });
    document.querySelectorAll("button[data-command=disconnect]").forEach(function (b) { b.hidden = offline; });
  }

  // `renderedAt`: when the server rendered the page's set-up (Unix time). A set-up edit
  // that reached the running charger later (`setup_at`) is not on the page: it says so.
  // `outOfService`: why the charger is not running as the page was served ("" if it runs).
  ChargeSim.chargerPage = function (pk, renderedAt, timeZone, outOfService) {
    pageClock = zoneClock(timeZone);
    // Each command's answer shows next to the control that sent it (in its card): one line
    // above the connector cards was off screen by the time a user reached connector 1.
    const waiting = new Map(); // request id -> the result line its answer goes to
    let lastResult = null; // the line of the last command sent
    const charts = {};
    const shown = {}; // connector -> the session its chart shows: {started, ended}
    document.querySelectorAll("[data-chart]").forEach(function (el) {
      charts[el.dataset.chart] = timeChart(el, [
        { label: "power (kW)", scale: "kW", stroke: "#2563eb", width: 2 },
        { label: "SoC (%)", scale: "%", stroke: "#16a34a", width: 2 },
      ]);
    });
    let canDrive = true;
    // The controls, their inputs too, only for a user who may drive a charger that runs
    // (a disabled or deleted one's answered every click with a worker's error); the page
    // says why not, next to them.
    function paintDriving() {
      const off = !canDrive || !!outOfService;
      document.querySelectorAll(
        "[data-command] button, button[data-command], form[data-command] input:not([type=hidden]), form[data-command] select"
      ).forEach(function (el) { el.disabled = off; });
      const note = document.getElementById("watch-only");
      if (note) note.hidden = canDrive;
      document.querySelectorAll("[data-out-of-service]").forEach(function (el) {
        el.hidden = !outOfService;
        setText(el, outOfService ? "This charger is not running (" + outOfService + "): nothing to drive until it runs again." : "");
      });
    }
    // Its snapshots say when it is taken out of the running fleet, and when it runs again.
    function followService(snap) {
      const now = snap.in_service === false ? snap.link_error || "not running" : "";
      if (now === outOfService) return;
      outOfService = now;
      paintDriving();
    }

    // The recent-transactions table is the database's: fetched again when a session starts,
    // gets its CSMS id or ends (soon after, and once more a little later: the checkpoint
    // that writes it runs beside the snapshot, not before it).
    let sessions = null;
    let refetches = [];
    function followTransactions(snap) {
      if (snap.in_service === false) return;  // deleted, maybe: its transactions are gone
      const now = JSON.stringify(snap.evses.map(function (e) {
        return [e.connector_id, e.transaction_id, e.session && e.session.started_at, e.session && e.session.ended_at];
      }));
      if (sessions === null || sessions === now) { sessions = now; return; }
      sessions = now;
      refetches.forEach(clearTimeout);
      refetches = [700, 3000].map(function (ms) { return setTimeout(loadTransactions, ms); });
    }
    function loadTransactions() {
      fetch("/chargers/" + pk + "/transactions/", { credentials: "same-origin" })
        .then(function (response) { return response.ok ? response.text() : null; })
        .then(function (html) {
          const old = document.getElementById("recent-transactions");
          if (html == null || !old) return;
          // Django's template escaped every value in it: parsed, not trusted as script.
          const fresh = new DOMParser().parseFromString(html, "text/html").getElementById("recent-transactions");
          if (fresh && fresh.innerHTML !== old.innerHTML) old.replaceWith(fresh);
          else if (fresh) old.hidden = fresh.hidden;
        })
        .catch(function () { /* the next change fetches it again */ });
    }

    const paint = batcher(function (_key, snap) {
      setLink(document.getElementById("link"), snap, false);
      setText(document.querySelector("[data-field=boot]"), snap.boot);
      const error = document.getElementById("link-error");
      // Why it is not online (also while it tries again), said once, here.
      const reason = snap.link !== "online" ? snap.link_error : null;
      error.hidden = !reason;
      countdown(error, reason ? snap.offline_until : null, snap.at, function (seconds) {
        return linkReason(snap, seconds);
      });
      if (!reason || snap.offline_until == null) setText(error, reason ? linkReason(snap, 0) : "");
      paintControls(snap);
      paintNetwork(document.querySelector(".identity [data-field=network]"), snap);
      followService(snap);
      paintMaintenance(snap);
      followTransactions(snap);
      if (snap.setup_at != null && renderedAt != null && snap.setup_at > renderedAt) {
        document.getElementById("setup-changed").hidden = false;
      }
      for (const evse of snap.evses) {
        const card = document.querySelector('.evse-card[data-evse="' + evse.connector_id + '"]');
        if (!card) continue;
        const field = function (name) { return card.querySelector("[data-field=" + name + "]"); };
        setStatus(field("status"), statusOf(snap, evse));
        // Why it is in that status (the StatusNotification's info), while it runs.
        const statusInfo = field("status_info");
        const why = snap.in_service !== false && evse.info ? evse.info : "";
        if (statusInfo) statusInfo.hidden = !why;
        setText(statusInfo, why);
        setText(field("power"), kw(evse.power_w));
        setText(field("soc"), pct(evse.soc));
        // Whole Wh cut, as the charger reports the register to the CSMS (meterStop).
        setText(field("energy"), String(Math.floor(evse.register_wh)));
        // This session's (or the last one's, once it ended: the register stood still since).
        setText(field("session_energy"), evse.session
          ? String(Math.max(0, Math.floor(evse.register_wh - evse.session.start_wh)))
          : "–");
        // Voltage and current apply only while a vehicle is plugged in.
        const plugged = evse.vehicle != null;
        setText(field("current"), plugged && evse.current_a.length ? evse.current_a.map(function (a) { return a.toFixed(1); }).join(" / ") : "–");
        setText(field("voltage"), plugged && evse.voltage_v.length ? evse.voltage_v.map(function (v) { return v.toFixed(0); }).join(" / ") : "–");
        setText(field("vehicle"), evse.vehicle || "–");
        setText(field("id_tag"), evse.id_tag || "–");
        setText(field("transaction"), evse.transaction_id == null ? "–" : String(evse.transaction_id));
        setText(field("error"), evse.error_code && evse.error_code !== "NoError" ? evse.error_code : "–");
        paintAuthorization(field("authorization"), evse, snap);
        drawSession(evse, snap);
      }
    });

    // Each connector's chart shows one session: the ongoing one, or the last one once it
    // ended. The engine sends the whole series when the page connects (also after a
    // reload); later snapshots add their own point.
    function loadSeries(snap) {
      for (const evse of snap.evses) {
        const chart = charts[evse.connector_id];
        const session = evse.session;
        if (!chart || !session || !session.points) continue;
        chart.load(session.points.map(function (p) { return [p[0], p[1] / 1000, p[2]]; }));
        shown[evse.connector_id] = { started: session.started_at, ended: session.ended_at };
        chart.draw();
        markSession(evse.connector_id, session.ended_at);
      }
    }
    function drawSession(evse, snap) {
      const chart = charts[evse.connector_id];
      const session = evse.session;
      if (!chart || !session) return;
      let now = shown[evse.connector_id];
      if (!now || now.started !== session.started_at) {
        chart.reset(); // a new session: a new chart, from its start
        now = shown[evse.connector_id] = { started: session.started_at, ended: null };
        chart.push(session.started_at, [0, evse.soc]);
      }
      if (now.ended != null) return; // the last session, complete
      if (session.ended_at != null) {
        chart.push(session.ended_at, [0, evse.soc]);
        now.ended = session.ended_at;
      } else {
        chart.push(snap.at, [evse.power_w / 1000, evse.soc]);
      }
      chart.draw();
      markSession(evse.connector_id, now.ended);
    }
    function markSession(connectorId, ended) {
      const el = document.querySelector('[data-chart="' + connectorId + '"]');
      if (el) el.dataset.session = ended == null ? "ongoing" : "ended";
    }

    // The message log: newest first, bounded, filterable by action.
    // Only a user with the view permission gets the log, and its table.
    const log = document.getElementById("message-log") ? messageLog() : null;

    let next = 1;
    let seen = false;
    let lostCommand = false; // a command's connection was lost and no socket has opened since
    setTimeout(function () { if (!seen) markNotRunning(document); }, NOT_RUNNING_AFTER_MS);
    const live = socket("/ws/chargers/" + pk + "/", function (message) {
      if (message.type === "hello" || message.type === "access") {
        // "access": the user gained or lost "change charger" while the page is open.
        if (message.type === "hello") lostCommand = false;
        canDrive = message.can_drive;
        paintDriving();
      } else if (message.type === "charger.state") {
        seen = true;
        // Now, not in the next frame: a later snapshot in the same frame replaces this
        // one, and only this one carries the series.
        loadSeries(message.charger);
        paint("charger", message.charger);
      }
      else if (message.type === "charger.log" && log) log.add(message.frames, message.full, message.skipped);
      else if (message.type === "command.result") {
        const line = waiting.get(message.request_id);
        if (!line) return;
        waiting.delete(message.request_id);
        showResult(line, message.ok ? "ok" : "error", (message.ok ? "✓ " : "✗ ") + message.message);
      }
    }, null, function (event) {
      // A command still waiting gets no answer on this socket any more: say why. When the
      // connection was lost for another reason first, the reconnect may be the one that
      // learns the user logged out: that is said too, as what to do next.
      const lines = new Set(waiting.values());
      waiting.clear();
      if (event.code === LOGGED_OUT && !lines.size && lostCommand && lastResult) {
        showResult(lastResult, "error", "✗ logged out: log in again to drive this charger" +
          "; the connection was lost before the answer, so the command may or may not have run");
      }
      lines.forEach(function (line) {
        if (event.code === LOGGED_OUT) {
          showResult(line, "error", "✗ logged out: log in again to drive this charger");
        } else if (event.code === NO_ACCESS) {
          showResult(line, "error", "✗ your account can no longer drive this charger");
        } else {
          lostCommand = true;
          showResult(line, "error", "✗ the connection to the server was lost before the answer: the command may or may not have run");
        }
      });
    });

    function showResult(line, kind, text) {
      line.className = "result " + kind;
      setText(line, text);
    }
    // `origin`: the control that sent it; its card's result line gets the answer.
    function send(command, args, origin) {
      const id = "c" + next++;
      const line = origin.closest(".card").querySelector("[data-result]");
      lostCommand = false;
      lastResult = line;
      showResult(line, "pending", command.replaceAll("_", " ") + "…");
      if (!live.send({ type: "command", request_id: id, charger: pk, command: command, args: args })) {
        const ended = live.ended();
        showResult(line, "error", ended === LOGGED_OUT
          ? "✗ logged out: log in again to drive this charger"
          : ended === NO_ACCESS
          ? "✗ your account can no longer drive this charger"
          : ended === NOT_FOUND
          ? "✗ this charger no longer exists"
          : "✗ not connected to the server; retrying the connection");
        return;
      }
      waiting.set(id, line);
    }
    document.querySelectorAll("form[data-command]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        event.preventDefault();
        const args = {};
        new FormData(form).forEach(function (value, key) { args[key] = value; });
        // A value shown in other units than the engine's (a loss in %, sent as a share).
        form.querySelectorAll("input[data-scale]").forEach(function (input) {
          if (input.value !== "") args[input.name] = Number(input.value) * Number(input.dataset.scale);
        });
        send(form.dataset.command, args, form);
      });
    });
    document.querySelectorAll("button[data-command]").forEach(function (button) {
      button.addEventListener("click", function () {
        const args = button.dataset.connector ? { connector_id: button.dataset.connector } : {};
        // What interrupts the charger (a reboot) runs only once confirmed, as on the fleet page.
        if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) {
          showResult(button.closest(".card").querySelector("[data-result]"), "",
            "not run: " + button.textContent.toLowerCase() + " was not confirmed");
          return;
        }
        send(button.dataset.command, args, button);
      });
    });
  };

  function messageLog() {
    const body = document.querySelector("#message-log tbody");
    const select = document.getElementById("log-action");
    const pause = document.getElementById("log-pause");
    const actions = new Set();
    const calls = new Map(); // unique id -> action of the CALL it answers
    let queue = [];
    let scheduled = false;

    function describe(text) {
      let frame;
      try {
        frame = JSON.parse(text);
      } catch (e) {
        return { action: "?", kind: "unparsed", id: "", pretty: text };
      }
      const type = frame[0];
      const id = String(frame[1]);
      if (type === 2) {
        calls.set(id, frame[2]);
        if (calls.size > 2000) calls.delete(calls.keys().next().value);
        return { action: frame[2], kind: "call", id: id, pretty: JSON.stringify(frame[3], null, 2) };
      }
      const action = calls.get(id) || "?";
      if (type === 3) return { action: action, kind: "result", id: id, pretty: JSON.stringify(frame[2], null, 2) };
      return { action: action, kind: "error", id: id, pretty: frame[2] + ": " + frame[3] + "\n" + JSON.stringify(frame[4] || {}, null, 2) };
    }

    // A connection event: its name, and its details in words (the close code first).
    function describeEvent(text) {
      let detail;
      try { detail = JSON.parse(text); } catch (e) { detail = { event: "?" }; }
      const name = String(detail.event || "?");
      delete detail.event;
      const words = [];
      if (detail.code != null) words.push("code " + detail.code + (detail.reason ? " (" + detail.reason + ")" : ""));
      if (detail.url) words.push(detail.url + (detail.subprotocol ? ", " + detail.subprotocol : ""));
      if (detail.in_seconds != null) words.push("in " + detail.in_seconds + " s, attempt " + detail.attempt);
      if (detail.reason && detail.code == null) words.push(detail.reason);
      if (detail.retry_in_seconds != null) words.push("retry in " + detail.retry_in_seconds + " s");
      if (detail.seconds_left != null) words.push(detail.seconds_left + " s left");
      return { action: name, kind: "connection", id: "", pretty: words.length ? words.join("; ") : JSON.stringify(detail) };
    }

    // The place of frames left out: one row across the table, shown whatever the filter.
    function skippedRow(count) {
      const tr = document.createElement("tr");
      tr.className = "frames-skipped";
      const td = document.createElement("td");
      td.colSpan = 5;
      td.textContent = "… " + count.toLocaleString("en") + " older frames skipped: the page " +
        "fell behind (a slow connection, or the tab was paused)";
      tr.appendChild(td);
      return tr;
    }

    function row(entry) {
      const [t, direction, text] = entry;
      if (direction === SKIPPED) return skippedRow(text);
      const info = direction === "event" ? describeEvent(text) : describe(text);
      const tr = document.createElement("tr");
      tr.dataset.action = info.action;
      tr.className = "frame " + info.kind;
      const cells = [
        clock(t) + "." + String(Math.floor(t * 1000) % 1000).padStart(3, "0"),
        direction === "event" ? "connection" : direction === "out" ? "→ CSMS" : "← CSMS",
        info.id,
        info.action + (info.kind === "call" || info.kind === "connection" ? "" : " " + info.kind),
      ];
      for (const value of cells) {
        const td = document.createElement("td");
        td.textContent = value;
        td.title = value;
        tr.appendChild(td);
      }
      const td = document.createElement("td");
      const pre = document.createElement("pre");
      td.appendChild(pre);
      showText(td, pre, info.pretty);
      tr.appendChild(td);
      if (!actions.has(info.action) && info.action !== "?") {
        actions.add(info.action);
        const option = document.createElement("option");
        option.textContent = info.action;
        select.appendChild(option);
      }
      tr.hidden = !!select.value && select.value !== info.action;
      return tr;
    }

    // A long frame (a 40 kB DataTransfer) shows its start, and all of it on request: whole,
    // it was a table as wide as the frame was long. Long lines wrap (dashboard.css).
    function showText(td, pre, text) {
      if (text.length <= LOG_TEXT_SHOWN) {
        pre.textContent = text;
        return;
      }
      const button = document.createElement("button");
      button.type = "button";
      button.className = "show-all";
      let whole = false;
      function paint() {
        pre.textContent = whole ? text : text.slice(0, LOG_TEXT_SHOWN) + "…";
        button.textContent = whole
          ? "show less"
          : "show all " + text.length.toLocaleString("en") + " characters";
        pre.classList.toggle("whole", whole);
      }
      button.addEventListener("click", function () { whole = !whole; paint(); });
      paint();
      td.appendChild(button);
    }

    function flush() {
      scheduled = false;
      if (pause.checked) return;
      const batch = queue;
      queue = [];
      // Described oldest first (a result finds the CALL it answers), shown newest first.
      const rows = batch.map(row);
      const fragment = document.createDocumentFragment();
      for (let i = rows.length - 1; i >= 0; i--) fragment.appendChild(rows[i]);
      body.insertBefore(fragment, body.firstChild);
      while (body.rows.length > LOG_ROWS) body.deleteRow(body.rows.length - 1);
    }
    pause.addEventListener("change", function () {
      if (!pause.checked && queue.length) requestAnimationFrame(flush);
    });
    select.addEventListener("change", function () {
      for (const tr of body.rows) {
        if (tr.dataset.action !== undefined) tr.hidden = !!select.value && select.value !== tr.dataset.action;
      }
    });
    return {
      // `skipped`: frames older than these that the server left out while the page was
      // not reading (chargers/dashboard/backlog.py); the table says where.
      add: function (frames, full, skipped) {
        if (full) {
          body.textContent = "";
          queue = [];
        }
        if (skipped) queue.push([frames.length ? frames[0][0] : Date.now() / 1000, SKIPPED, skipped]);
        queue = queue.concat(frames).slice(-LOG_ROWS);
        if (!scheduled) {
          scheduled = true;
          requestAnimationFrame(flush);
        }
      },
    };
  }
})();
