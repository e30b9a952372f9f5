// gitopsd status page: list filters and live updates (server-sent events). No dependencies.
"use strict";
(function () {
  document.documentElement.classList.add("js");
  var body = document.body;

  // -- the app list: filter rows in the browser, keep the URL in step -------------------
  var table = document.getElementById("apps");
  var form = document.getElementById("filters");
  function field(id) { return document.getElementById(id); }
  // What the text search looks at (the server's filter uses the same fields).
  function searchText(r) {
    if (r._search === undefined) {
      var msg = r.querySelector(".msg"), src = r.querySelector(".source"), rev = r.querySelector(".rev [title]");
      r._search = [r.textContent, msg ? msg.title : "", src ? src.title : "", rev ? rev.title : ""].join(" ").toLowerCase();
    }
    return r._search;
  }
  function applyFilters() {
    if (!table || !form) return;
    var sync = field("f-sync").value, health = field("f-health").value, cluster = field("f-cluster").value;
    var words = field("f-q").value.toLowerCase().split(/\s+/).filter(Boolean);
    var rows = table.tBodies[0].rows, shown = 0;
    for (var i = 0; i < rows.length; i++) {
      var r = rows[i], d = r.dataset, ok = true;
      if (sync && d.sync !== sync) ok = false;
      else if (health && d.health !== health) ok = false;
      else if (cluster && d.cluster !== cluster) ok = false;
      else if (words.length) {
        var hay = searchText(r);
        for (var w = 0; w < words.length; w++) { if (hay.indexOf(words[w]) < 0) { ok = false; break; } }
      }
      r.hidden = !ok;
      if (ok) shown++;
    }
    field("shown").textContent = shown + " of " + rows.length + " shown";
    var params = new URLSearchParams();
    if (sync) params.set("sync", sync);
    if (health) params.set("health", health);
    if (cluster) params.set("cluster", cluster);
    if (field("f-q").value) params.set("q", field("f-q").value);
    var qs = params.toString();
    history.replaceState(null, "", "/ui/" + (qs ? "?" + qs : ""));
    var buttons = document.querySelectorAll(".count[data-filter]");
    for (var b = 0; b < buttons.length; b++) {
      var btn = buttons[b];
      btn.setAttribute("aria-pressed", String(field("f-" + btn.dataset.filter).value === btn.dataset.value));
    }
  }
  if (form && table) {
    // The server filtered the first paint; from here on every row is needed in the page.
    if (location.search) {
      fetch("/ui/", { credentials: "same-origin" }).then(function (r) { return r.text(); }).then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        table.tBodies[0].replaceWith(doc.getElementById("apps").tBodies[0]);
        applyFilters();
      });
    }
    form.addEventListener("submit", function (e) { e.preventDefault(); applyFilters(); });
    form.addEventListener("change", applyFilters);
    field("f-q").addEventListener("input", applyFilters);
    document.addEventListener("click", function (e) {
      var btn = e.target.closest(".count[data-filter]");
      if (!btn) return;
      var select = field("f-" + btn.dataset.filter);
      select.value = select.value === btn.dataset.value ? "" : btn.dataset.value;
      applyFilters();
    });
  }

  // -- relative times ("42s ago") stay true while the page is open ----------------------
  function ago(iso) {
    var s = Math.max(0, Math.floor((Date.now() - Date.parse(iso)) / 1000));
    if (s >= 86400) return Math.floor(s / 86400) + "d ago";
    if (s >= 3600) return Math.floor(s / 3600) + "h ago";
    if (s >= 60) return Math.floor(s / 60) + "m ago";
    return s + "s ago";
  }
  setInterval(function () {
    var times = document.querySelectorAll("time[datetime]");
    for (var i = 0; i < times.length; i++) times[i].textContent = ago(times[i].getAttribute("datetime"));
  }, 15000);

  // -- live updates --------------------------------------------------------------------
  var url = body.dataset.live;
  if (!url || !window.EventSource) return;
  var live = document.getElementById("live");
  var source = new EventSource(url);
  source.onopen = function () {
    if (live) live.hidden = false;
    // What changed between rendering this page and the stream's start is caught up once.
    if (body.dataset.partial) refreshApp();
  };
  source.onerror = function () { if (live) live.hidden = true; };
  source.addEventListener("logout", function () { location.href = "/ui/login"; });
  source.addEventListener("reload", function () { location.reload(); });
  source.addEventListener("rows", function (e) {
    var data = JSON.parse(e.data);
    var byName = {};
    var rows = table.tBodies[0].rows;
    for (var i = 0; i < rows.length; i++) byName[rows[i].dataset.app] = rows[i];
    Object.keys(data.rows).forEach(function (name) {
      var old = byName[name];
      if (!old) return;
      var tmp = document.createElement("tbody");
      tmp.innerHTML = data.rows[name];  // rendered and escaped by the server's templates
      var fresh = tmp.firstElementChild;
      if (fresh) old.replaceWith(fresh);
    });
    var counts = document.getElementById("counts");
    if (counts && data.counts) {
      var box = document.createElement("div");
      box.innerHTML = data.counts;
      counts.replaceWith(box.firstElementChild);
    }
    applyFilters();
  });
  var pending = false, again = false, failures = 0;
  source.addEventListener("changed", refreshApp);
  function refreshApp() {
    if (pending) { again = true; return; }
    pending = true;
    fetch(body.dataset.partial, { credentials: "same-origin" }).then(function (r) {
      if (r.redirected) { location.reload(); return ""; }
      if (!r.ok) {  // e.g. the app restarts after a config reload: try again shortly
        if (++failures > 5) location.reload(); else setTimeout(refreshApp, 1000);
        return "";
      }
      failures = 0;
      return r.text();
    }).then(function (html) {
      pending = false;
      if (!html) return;
      var main = document.getElementById("app-main");
      var open = {};
      main.querySelectorAll("details").forEach(function (d) { open[d.querySelector("summary").textContent] = d.open; });
      main.innerHTML = html;  // rendered and escaped by the server's templates
      main.querySelectorAll("details").forEach(function (d) {
        var key = d.querySelector("summary").textContent;
        if (key in open) d.open = open[key];
      });
      if (again) { again = false; refreshApp(); }
    }, function () { pending = false; });
  }
})();
