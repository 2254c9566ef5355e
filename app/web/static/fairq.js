// Live regions: an element with data-refresh="URL" gets that URL's HTML every 2 seconds,
// until the page is hidden or the server answers with an error (then a reload shows why).
(function () {
  "use strict";
  var PERIOD = 2000;
  function refresh(element) {
    if (document.hidden) { return schedule(element); }
    fetch(element.getAttribute("data-refresh"), { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
      .then(function (response) {
        if (!response.ok || response.redirected) { throw new Error(String(response.status)); }
        return response.text();
      })
      .then(function (html) {
        // keep a keyboard user's place: the focused control, if it is still there, keeps focus
        var focused = document.activeElement;
        var focusedId = focused && element.contains(focused) ? focused.id : "";
        element.innerHTML = html;
        if (focusedId && document.getElementById(focusedId)) { document.getElementById(focusedId).focus(); }
        if (!element.querySelector("[data-final]")) { schedule(element); }  // a finished job stops
      })
      .catch(function () { element.setAttribute("data-refresh-stopped", "true"); });
  }
  function schedule(element) { window.setTimeout(function () { refresh(element); }, PERIOD); }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-refresh]").forEach(schedule);
  });
})();
