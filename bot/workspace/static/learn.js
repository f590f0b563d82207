/* tiaojie workspace: keyboard labelling in the review inbox, live training progress.
 *
 * Every choice in the inbox is a plain form with a CSRF token, so the page works
 * without this script. With it, j/k or the arrows move between items, 1/2/3 press the
 * model's top three, s skips and n marks "not a real message": the same form is sent
 * with fetch, the item is replaced by the fragment the server renders (who labelled it,
 * when) and the focus moves on at once. On a model's page it follows the training over
 * Server-Sent Events. No inline script, no eval, nothing from another origin. */
(function () {
  "use strict";

  var current = null;

  function items() {
    return Array.prototype.slice.call(document.querySelectorAll("#inbox .learn-item"));
  }

  function focusItem(el) {
    if (!el) { return; }
    items().forEach(function (other) {
      other.classList.remove("focused");
      other.removeAttribute("aria-current");
    });
    el.classList.add("focused");
    el.setAttribute("aria-current", "true");
    el.focus({ preventScroll: true });
    el.scrollIntoView({ block: "nearest" });
    current = el;
  }

  function move(step) {
    var all = items();
    if (!all.length) { return; }
    var index = all.indexOf(current);
    var next = index < 0 ? 0 : Math.max(0, Math.min(all.length - 1, index + step));
    focusItem(all[next]);
  }

  function showError(text) {
    var box = document.getElementById("learn-status");
    if (!box) { return; }
    box.textContent = text;
    box.hidden = false;
  }

  function send(form, submitter) {
    var inbox = document.getElementById("inbox");
    var article = form.closest(".learn-item");
    var data = new URLSearchParams();
    new FormData(form).forEach(function (value, key) { data.append(key, value); });
    if (submitter && submitter.name) { data.append(submitter.name, submitter.value); }
    article.classList.add("saving");
    if (article === current) { move(1); }  // the focus moves on before the answer
    fetch(form.action, {
      method: "POST",
      credentials: "same-origin",
      headers: {
        "X-Requested-With": "fetch",
        "Content-Type": "application/x-www-form-urlencoded"
      },
      body: data.toString()
    }).then(function (response) {
      return response.text().then(function (text) {
        return { ok: response.ok, text: text, type: response.headers.get("Content-Type") || "" };
      });
    }).then(function (answer) {
      article.classList.remove("saving");
      if (!answer.ok) {
        // Our own refusals are one plain sentence; anything else gets the page's words.
        showError(answer.type.indexOf("text/plain") === 0 ? answer.text : inbox.dataset.error);
        return;
      }
      var holder = document.createElement("div");
      holder.innerHTML = answer.text.trim();
      var fresh = holder.firstElementChild;
      var wasCurrent = article === current;
      article.replaceWith(fresh);
      wire(fresh);
      if (wasCurrent) { focusItem(fresh); }
      var status = document.getElementById("learn-status");
      if (status) { status.hidden = true; }
    }).catch(function () {
      article.classList.remove("saving");
      showError(inbox.dataset.error);
    });
  }

  function wire(article) {
    var forms = article.querySelectorAll("form");
    for (var i = 0; i < forms.length; i++) {
      (function (form) {
        form.addEventListener("submit", function (event) {
          event.preventDefault();
          send(form, event.submitter);
        });
      })(forms[i]);
    }
    article.addEventListener("mousedown", function () { focusItem(article); });
  }

  function onKey(event) {
    if (event.ctrlKey || event.metaKey || event.altKey) { return; }
    var tag = (event.target && event.target.tagName || "").toLowerCase();
    if (tag === "input" || tag === "select" || tag === "textarea") { return; }
    var key = event.key;
    if (key === "j" || key === "ArrowDown") {
      event.preventDefault();
      move(1);
    } else if (key === "k" || key === "ArrowUp") {
      event.preventDefault();
      move(-1);
    } else if (key.length === 1 && "123sn".indexOf(key) >= 0 && current) {
      var button = current.querySelector('button[data-key="' + key + '"]');
      if (button) {
        event.preventDefault();
        button.click();
      }
    }
  }

  function inbox() {
    var all = items();
    all.forEach(wire);
    document.addEventListener("keydown", onKey);
    if (all.length) { focusItem(all[0]); }
    document.getElementById("inbox").dataset.keyboard = "1";
  }

  // ---------------------------------------------------------------- training progress

  function training(box) {
    var bar = document.getElementById("progress");
    var percent = document.getElementById("percent");
    var stage = document.getElementById("stage");
    var stages = document.getElementById("stages");
    var verdict = document.getElementById("verdict");
    var error = document.getElementById("training-error");
    var done = document.getElementById("done");
    var seen = {};
    var source = new EventSource(box.dataset.live);
    source.addEventListener("progress", function (event) {
      var data = JSON.parse(event.data);
      if (data.status === "missing") { source.close(); return; }
      bar.value = data.progress;
      percent.textContent = Math.round(data.progress * 100) + " %";
      if (data.stage_label) {
        stage.textContent = data.stage_label;
        if (!seen[data.stage]) {
          seen[data.stage] = true;
          var item = document.createElement("li");
          item.textContent = data.stage_label;
          item.dataset.stage = data.stage;
          stages.appendChild(item);
        }
      }
      box.dataset.status = data.status;
      box.dataset.progress = String(data.progress);
      if (data.final) {
        source.close();
        stage.textContent = data.status_label;
        if (data.verdict) { verdict.textContent = data.verdict; verdict.hidden = false; }
        if (data.error) { error.textContent = data.error; error.hidden = false; }
        done.hidden = false;
      }
    });
    box.dataset.connected = "1";
  }

  document.addEventListener("DOMContentLoaded", function () {
    if (document.getElementById("inbox")) { inbox(); }
    var box = document.getElementById("training");
    if (box && box.dataset.live) { training(box); }
  });
})();
