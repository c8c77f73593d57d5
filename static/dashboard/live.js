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
    el.className = el.className.replace(/\bstatus-\S+/g, "").trim() + " status-" + status.toLowerCase();
  }
  function linkText(snap) {
    if (snap.link === "online") return snap.boot === "Accepted" ? "online" : "online, boot " + snap.boot;
    if (snap.link === "connecting") return "connecting";
    return snap.link_error ? "offline: " + snap.link_error : "offline";
  }
  function setLink(el, snap) {
    if (!el) return;
    setText(el, linkText(snap));
    el.dataset.link = snap.link;
    el.title = snap.link_error || "";
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

  // A WebSocket that reconnects with backoff; `onOpen` runs after every (re)connect.
  function socket(path, onMessage, onOpen) {
    const state = document.getElementById("live-state");
    let ws = null;
    let delay = 500;
    function connect() {
      const scheme = location.protocol === "https:" ? "wss://" : "ws://";
      ws = new WebSocket(scheme + location.host + path);
      ws.onopen = function () {
        delay = 500;
        setText(state, "live");
        state && state.classList.add("on");
        if (onOpen) onOpen();
      };
      ws.onmessage = function (event) {
        onMessage(JSON.parse(event.data));
      };
      ws.onclose = function (event) {
        state && state.classList.remove("on");
        if (event.code === 4401) {
          setText(state, "logged out");
          return;
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
  }

  // -- charger rows (fleet and location pages) --------------------------------------------

  function paintRow(pk, snap) {
    const row = document.querySelector('tr[data-charger="' + pk + '"]');
    if (!row) return;
    setLink(row.querySelector("[data-field=link]"), snap);
    for (const evse of snap.evses) {
      const cell = row.querySelector('[data-evse="' + evse.connector_id + '"]');
      if (!cell) continue;
      setStatus(cell.querySelector("[data-field=status]"), evse.status);
      setText(cell.querySelector("[data-field=power]"), kw(evse.power_w) + " kW");
      setText(cell.querySelector("[data-field=soc]"), evse.soc == null ? "" : pct(evse.soc) + " %");
    }
  }

  // A charger no worker runs sends no snapshot: after this long it shows "not running"
  // (grey), not the status last checkpointed.
  const NOT_RUNNING_AFTER_MS = 5000;

  function markNotRunning(scope) {
    const link = scope.querySelector("[data-field=link]");
    if (link) { setText(link, "not running"); link.dataset.link = "not-running"; }
    scope.querySelectorAll("[data-field=status]").forEach(function (el) {
      setStatus(el, "not running");
      el.className = el.className.replace(/\bstatus-\S+/g, "").trim() + " status-not-running";
    });
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
    rowsPage(path, ids);
  };

  // -- location page ---------------------------------------------------------------------

  function timeChart(el, series, height) {
    if (!el || !window.uPlot) return null;
    const data = [[]].concat(series.map(function () { return []; }));
    const opts = {
      width: Math.max(el.clientWidth, 300),
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
    const plot = new uPlot(opts, data, el);
    window.addEventListener("resize", function () {
      plot.setSize({ width: Math.max(el.clientWidth, 300), height: opts.height });
    });
    return {
      push: function (t, values) {
        data[0].push(t);
        values.forEach(function (v, i) { data[i + 1].push(v); });
        if (data[0].length > CHART_POINTS) data.forEach(function (a) { a.shift(); });
      },
      reset: function () {
        data.forEach(function (a) { a.length = 0; });
      },
      draw: function () {
        const n = data[0].length;
        if (!n) return;
        plot.setData(data);
        // At least a minute wide, so that the first points do not span an odd range.
        const last = data[0][n - 1];
        plot.setScale("x", { min: Math.min(data[0][0], last - 60), max: last });
      },
    };
  }

  ChargeSim.locationPage = function (path, ids, limitKw) {
    const chart = timeChart(
      document.getElementById("site-chart"),
      [
        { label: "site power (kW)", scale: "kW", stroke: "#2563eb", width: 2, fill: "rgba(37,99,235,0.08)" },
        { label: "grid limit (kW)", scale: "kW", stroke: "#dc2626", dash: [6, 4] },
      ],
      180
    );
    const paint = batcher(function (_key, summary) {
      const power = summary.power_w || 0;
      setText(document.getElementById("site-power"), kw(power));
      setText(document.getElementById("site-charging"), String(summary.charging || 0));
      const held = document.getElementById("site-held-back");
      if (held) setText(held, String(summary.held_back || 0));
      setText(
        document.getElementById("site-shards"),
        summary.of > 1 ? summary.shards + " of " + summary.of + " workers reporting" : ""
      );
      const meter = document.getElementById("site-meter");
      if (meter) meter.value = power / 1000;
      const over = limitKw != null && power / 1000 > limitKw;
      document.querySelector(".site-power").classList.toggle("over-limit", over);
      paintCounts(summary);
      if (chart) {
        chart.push(Date.now() / 1000, [power / 1000, limitKw]);
        chart.draw();
      }
    });
    rowsPage(path, ids, function (message) {
      if (message.type === "location.power") paint("site", message);
    });
  };

  // -- charger page ----------------------------------------------------------------------

  function reservationText(r) {
    const where = r.connector_id === 0 ? "any connector" : "connector " + r.connector_id;
    const group = r.parent_id_tag ? " (or group " + r.parent_id_tag + ")" : "";
    return "#" + r.reservation_id + ": " + where + " for " + r.id_tag + group + " until " + r.expiry;
  }

  // Reservations, the local list, firmware and diagnostics (text only: nothing of a CSMS's
  // values ever becomes markup).
  function paintMaintenance(snap) {
    const box = document.getElementById("maintenance");
    if (!box || snap.reservations === undefined) return;
    const field = function (name) { return box.querySelector("[data-field=" + name + "]"); };
    setText(document.querySelector("[data-field=firmware_version]"), snap.firmware_version);
    setText(field("firmware_status"), snap.firmware_status);
    setText(field("diagnostics_status"), snap.diagnostics_status);
    if (snap.log_status !== undefined) {
      setText(field("log_status"), snap.log_status +
        (snap.log_request_id === null ? "" : " (request " + snap.log_request_id + ")"));
      showLines(field("security_events"), snap.security_events.length
        ? snap.security_events.map(securityEventText) : ["none"]);
    }
    setText(field("local_list"), snap.local_list_version < 0 ? "not supported"
      : "version " + snap.local_list_version + ", " + snap.local_list_size + " idTag" + (snap.local_list_size === 1 ? "" : "s"));
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

  // A security event as one line: when, what, why (and whether the CSMS was told).
  function securityEventText(e) {
    return e.timestamp + " " + e.type + (e.tech_info ? ": " + e.tech_info : "") +
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

  ChargeSim.chargerPage = function (pk) {
    const result = document.getElementById("result");
    const charts = {};
    const sessions = {};
    document.querySelectorAll("[data-chart]").forEach(function (el) {
      charts[el.dataset.chart] = timeChart(el, [
        { label: "power (kW)", scale: "kW", stroke: "#2563eb", width: 2 },
        { label: "SoC (%)", scale: "%", stroke: "#16a34a", width: 2 },
      ]);
    });
    let canDrive = true;

    const paint = batcher(function (_key, snap) {
      setLink(document.getElementById("link"), snap);
      setText(document.querySelector("[data-field=boot]"), snap.boot);
      const error = document.getElementById("link-error");
      error.hidden = !snap.link_error;
      setText(error, snap.link_error || "");
      paintMaintenance(snap);
      for (const evse of snap.evses) {
        const card = document.querySelector('.evse-card[data-evse="' + evse.connector_id + '"]');
        if (!card) continue;
        const field = function (name) { return card.querySelector("[data-field=" + name + "]"); };
        setStatus(field("status"), evse.status);
        setText(field("power"), kw(evse.power_w));
        setText(field("soc"), pct(evse.soc));
        setText(field("energy"), evse.register_wh.toFixed(0));
        setText(field("current"), evse.current_a.length ? evse.current_a.map(function (a) { return a.toFixed(1); }).join(" / ") : "–");
        setText(field("voltage"), evse.voltage_v.length ? evse.voltage_v.map(function (v) { return v.toFixed(0); }).join(" / ") : "–");
        setText(field("vehicle"), evse.vehicle || "–");
        setText(field("id_tag"), evse.id_tag || "–");
        setText(field("transaction"), evse.transaction_id == null ? "–" : String(evse.transaction_id));
        setText(field("error"), evse.error_code && evse.error_code !== "NoError" ? evse.error_code : "–");
        const chart = charts[evse.connector_id];
        if (!chart) continue;
        // A new session (a vehicle plugged in after none) starts a new chart.
        const session = evse.vehicle ? "plugged" : "";
        if (session && !sessions[evse.connector_id]) chart.reset();
        sessions[evse.connector_id] = session;
        chart.push(snap.at, [evse.power_w / 1000, evse.soc]);
        chart.draw();
      }
    });

    // The message log: newest first, bounded, filterable by action.
    // Only a user with the view permission gets the log, and its table.
    const log = document.getElementById("message-log") ? messageLog() : null;

    let next = 1;
    let seen = false;
    setTimeout(function () { if (!seen) markNotRunning(document); }, NOT_RUNNING_AFTER_MS);
    const live = socket("/ws/chargers/" + pk + "/", function (message) {
      if (message.type === "hello") {
        canDrive = message.can_drive;
        document.querySelectorAll("[data-command] button, button[data-command]").forEach(function (b) {
          b.disabled = !canDrive;
        });
      } else if (message.type === "charger.state") {
        seen = true;
        paint("charger", message.charger);
      }
      else if (message.type === "charger.log" && log) log.add(message.frames, message.full);
      else if (message.type === "command.result") {
        result.className = "result " + (message.ok ? "ok" : "error");
        setText(result, (message.ok ? "✓ " : "✗ ") + message.message);
      }
    });

    function send(command, args) {
      const id = "c" + next++;
      result.className = "result pending";
      setText(result, command.replace("_", " ") + "…");
      if (!live.send({ type: "command", request_id: id, charger: pk, command: command, args: args })) {
        result.className = "result error";
        setText(result, "✗ not connected to the server; retrying the connection");
      }
    }
    document.querySelectorAll("form[data-command]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        event.preventDefault();
        const args = {};
        new FormData(form).forEach(function (value, key) { args[key] = value; });
        send(form.dataset.command, args);
      });
    });
    document.querySelectorAll("button[data-command]").forEach(function (button) {
      button.addEventListener("click", function () {
        const args = button.dataset.connector ? { connector_id: button.dataset.connector } : {};
        send(button.dataset.command, args);
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
        return { action: "?", kind: "unparsed", pretty: text };
      }
      const type = frame[0];
      const id = frame[1];
      if (type === 2) {
        calls.set(id, frame[2]);
        if (calls.size > 2000) calls.delete(calls.keys().next().value);
        return { action: frame[2], kind: "call", pretty: JSON.stringify(frame[3], null, 2) };
      }
      const action = calls.get(id) || "?";
      if (type === 3) return { action: action, kind: "result", pretty: JSON.stringify(frame[2], null, 2) };
      return { action: action, kind: "error", pretty: frame[2] + ": " + frame[3] + "\n" + JSON.stringify(frame[4] || {}, null, 2) };
    }

    function row(entry) {
      const [t, direction, text] = entry;
      const info = describe(text);
      const tr = document.createElement("tr");
      tr.dataset.action = info.action;
      tr.className = "frame " + info.kind;
      const time = new Date(t * 1000);
      const cells = [
        time.toLocaleTimeString([], { hour12: false }) + "." + String(time.getMilliseconds()).padStart(3, "0"),
        direction === "out" ? "→ CSMS" : "← CSMS",
        info.action + (info.kind === "call" ? "" : " " + info.kind),
      ];
      for (const value of cells) {
        const td = document.createElement("td");
        td.textContent = value;
        tr.appendChild(td);
      }
      const td = document.createElement("td");
      const pre = document.createElement("pre");
      pre.textContent = info.pretty;
      td.appendChild(pre);
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
      for (const tr of body.rows) tr.hidden = !!select.value && select.value !== tr.dataset.action;
    });
    return {
      add: function (frames, full) {
        if (full) {
          body.textContent = "";
          queue = [];
        }
        queue = queue.concat(frames).slice(-LOG_ROWS);
        if (!scheduled) {
          scheduled = true;
          requestAnimationFrame(flush);
        }
      },
    };
  }
})();
