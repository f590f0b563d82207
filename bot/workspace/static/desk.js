/* tiaojie workspace: live queue and timeline over Server-Sent Events.
 * The stream only says "something changed on case X"; the page then fetches the
 * server-rendered (escaped) fragment from its own authorised route. No inline script,
 * no eval, nothing from another origin. */
(function () {
  "use strict";
  var baseTitle = document.title;
  var alerts = 0;

  function beep() {
    try {
      var Ctx = window.AudioContext || window.webkitAudioContext;
      if (!Ctx) { return; }
      var ctx = new Ctx();
      var osc = ctx.createOscillator();
      var gain = ctx.createGain();
      osc.frequency.value = 880;
      gain.gain.value = 0.15;
      osc.connect(gain); gain.connect(ctx.destination);
      osc.start(); osc.stop(ctx.currentTime + 0.4);
    } catch (e) { /* sound is a courtesy */ }
  }

  function urgentCue() {
    alerts += 1;
    document.title = "(" + alerts + ") \uD83D\uDD34 " + baseTitle;
    document.body.classList.add("alerting");
    beep();
  }

  window.addEventListener("focus", function () {
    alerts = 0; document.title = baseTitle; document.body.classList.remove("alerting");
  });

  function live(box) {
    var pending = null;
    function refresh() {
      pending = null;
      fetch(box.dataset.rows, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) { if (html !== null) { box.innerHTML = html; box.dataset.updated = String(Date.now()); } })
        .catch(function () {});
    }
    var source = new EventSource(box.dataset.live);
    source.addEventListener("change", function (event) {
      var parts = String(event.data).split(" ");
      if (box.id === "queue" && parts[1] === "filed" && parts[2] === "urgent") { urgentCue(); }
      if (box.id === "queue" && parts[1] === "escalation" && parts[2] === "urgent") { urgentCue(); }
      if (!pending) { pending = setTimeout(refresh, 150); }
    });
    box.dataset.connected = "1";
  }

  document.addEventListener("DOMContentLoaded", function () {
    var boxes = document.querySelectorAll("[data-live]");
    for (var i = 0; i < boxes.length; i++) { live(boxes[i]); }
  });
})();
