/**
 * The browser script, served as /assets/dashboard.js (the CSP forbids inline script). Plain ES2017 that runs
 * as-is: no build step. It listens to the page's event stream, reloads the main section on a saga event
 * (or appends rows on the live page), and reloads after a reconnect, since events in between are not replayed.
 */
export const CLIENT_JS = String.raw`(function () {
  "use strict";
  var body = document.body;
  var stream = body.getAttribute("data-stream");
  var refreshMs = Number(body.getAttribute("data-refresh")) || 0;
  var mode = body.getAttribute("data-on-event") || "refresh";
  var status = document.getElementById("live-status");
  var pending = null;
  var busy = false;

  function setStatus(text, cls) {
    if (!status) return;
    status.textContent = text;
    status.className = "live-status " + cls;
  }

  function typing(main) {
    var a = document.activeElement;
    return a && main.contains(a) && (a.tagName === "INPUT" || a.tagName === "TEXTAREA" || a.tagName === "SELECT");
  }

  // A collapsible block is known by its summary text and its rank among blocks with that text.
  function keysOf(main) {
    var seen = {};
    var keys = [];
    main.querySelectorAll("details").forEach(function (d) {
      var s = d.querySelector("summary");
      var text = s ? s.textContent : "";
      seen[text] = (seen[text] || 0) + 1;
      keys.push({ el: d, key: text + "#" + seen[text] });
    });
    return keys;
  }

  function refresh() {
    pending = null;
    var main = document.getElementById("main");
    if (!main) return;
    if (busy || typing(main)) { schedule(1000); return; }
    busy = true;
    fetch(location.href, { headers: { "X-Partial": "1" }, credentials: "same-origin" })
      .then(function (r) { if (!r.ok) throw new Error(String(r.status)); return r.text(); })
      .then(function (text) {
        var doc = new DOMParser().parseFromString(text, "text/html");
        var next = doc.getElementById("main");
        if (!next) return;
        var open = keysOf(main).filter(function (k) { return k.el.open; }).map(function (k) { return k.key; });
        var shut = keysOf(main).filter(function (k) { return !k.el.open; }).map(function (k) { return k.key; });
        keysOf(next).forEach(function (k) {
          if (open.indexOf(k.key) >= 0) k.el.open = true;
          else if (shut.indexOf(k.key) >= 0) k.el.open = false;
        });
        main.replaceWith(document.importNode(next, true));
        body.setAttribute("data-refreshed", String(Date.now()));
      })
      .catch(function () {})
      .then(function () { busy = false; });
  }

  function schedule(ms) {
    if (pending) return;
    pending = setTimeout(refresh, ms);
  }

  function cell(text) {
    var td = document.createElement("td");
    td.textContent = text == null ? "" : String(text);
    return td;
  }

  function append(ev) {
    var tbody = document.getElementById("live-events");
    if (!tbody) return;
    var tr = document.createElement("tr");
    tr.className = "fresh";
    tr.setAttribute("data-event-id", String(ev.id));
    tr.appendChild(cell(ev.id));
    tr.appendChild(cell(String(ev.createdAt).replace("T", " ").slice(0, 23)));
    tr.appendChild(cell(ev.type));
    var sagaCell = document.createElement("td");
    if (ev.sagaId) {
      var a = document.createElement("a");
      a.href = body.getAttribute("data-base") + "/sagas/" + encodeURIComponent(ev.sagaId);
      a.textContent = (ev.name || "") + " " + String(ev.sagaId).slice(0, 8);
      sagaCell.appendChild(a);
    } else {
      sagaCell.textContent = ev.key ? "key " + ev.key : "";
    }
    tr.appendChild(sagaCell);
    tr.appendChild(cell(ev.step));
    tbody.insertBefore(tr, tbody.firstChild);
    while (tbody.children.length > 500) tbody.removeChild(tbody.lastChild);
  }

  if (stream) {
    var source = new EventSource(stream, { withCredentials: true });
    // "ready": the server listens now; reload once, for what changed between render and listen.
    source.addEventListener("ready", function () {
      setStatus("live", "ok");
      if (mode === "refresh") schedule(0);
    });
    source.onerror = function () {
      setStatus("reconnecting…", "warn");
    };
    source.addEventListener("saga", function (message) {
      var ev;
      try { ev = JSON.parse(message.data); } catch (e) { return; }
      if (mode === "append") append(ev);
      else schedule(200);
    });
  }
  if (refreshMs > 0) setInterval(function () { if (!document.hidden) schedule(0); }, refreshMs);

  // Confirmation before an action (the form also needs a reason).
  document.addEventListener("submit", function (e) {
    var form = e.target;
    var button = form.querySelector("button.danger");
    if (button && !window.confirm(button.textContent + "?")) e.preventDefault();
  });
})();
`;
