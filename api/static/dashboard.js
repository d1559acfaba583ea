// The operator dashboard's refresh: every data-refresh-ms, fetch the page's sections as they
// are now and swap in those that changed (a section left alone keeps its focus and any click
// under way, e.g. on a Redeliver button). A session that ended reloads the page (login).
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live) {
    return;
  }
  var every = Number(live.getAttribute("data-refresh-ms")) || 1000;

  function swap(html) {
    var fresh = document.createElement("div");
    fresh.innerHTML = html;
    var sections = fresh.querySelectorAll("section[id]");
    for (var i = 0; i < sections.length; i++) {
      var current = document.getElementById(sections[i].id);
      if (current && current.innerHTML !== sections[i].innerHTML) {
        current.replaceWith(sections[i].cloneNode(true));
      }
    }
  }

  function refresh() {
    fetch("/dashboard/live", { credentials: "same-origin", cache: "no-store" })
      .then(function (answer) {
        if (answer.status === 401) {
          window.location.reload();
          return null;
        }
        return answer.ok ? answer.text() : null;
      })
      .then(function (html) {
        if (html) {
          swap(html);
        }
      })
      .catch(function () {
        // a missed refresh: the next one tries again
      })
      .then(function () {
        window.setTimeout(refresh, every);
      });
  }

  window.setTimeout(refresh, every);
})();
