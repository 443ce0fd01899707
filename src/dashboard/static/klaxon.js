// klaxon's dashboard: with scripts on, the page fetches itself every few seconds and
// swaps in the new <main> and health line, so it stays current without a reload. Off,
// the page is the same, only still. Nothing is loaded from anywhere else.
(function () {
  "use strict";
  var secs = parseInt(document.body.getAttribute("data-refresh"), 10) || 5;
  var busy = false;

  function swap(html) {
    var next = new DOMParser().parseFromString(html, "text/html");
    ["content", "health"].forEach(function (id) {
      var old = document.getElementById(id);
      var fresh = next.getElementById(id);
      if (!old || !fresh) return;
      // Leave the page alone while someone is using a control inside it.
      if (old.contains(document.activeElement) && document.activeElement !== document.body) return;
      old.replaceWith(fresh);
    });
    if (next.title) document.title = next.title;
  }

  function refresh() {
    if (busy || document.hidden) return;
    busy = true;
    fetch(window.location.href, {
      headers: { "Accept": "text/html" },
      credentials: "same-origin",
      cache: "no-store"
    })
      .then(function (r) { return r.ok || r.status === 404 ? r.text() : null; })
      .then(function (html) { if (html) swap(html); })
      .catch(function () { /* the agent is restarting or gone: try again next time */ })
      .then(function () { busy = false; });
  }

  window.setInterval(refresh, secs * 1000);
  document.addEventListener("visibilitychange", function () { if (!document.hidden) refresh(); });
})();
