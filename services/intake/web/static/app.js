/* refnet web app: progressive enhancement only. Every page works without this script; with it,
   deadlines count down, the inbox updates live over Server-Sent Events, and the dashboard refreshes.
   No framework, no build step, nothing from another origin. */
(function () {
  "use strict";
  var body = document.body;
  var data = body.dataset;
  var announcer = document.getElementById("announcer");

  function announce(text) {
    if (!announcer || !text) return;
    announcer.textContent = "";
    window.setTimeout(function () { announcer.textContent = text; }, 60);
  }

  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function fmt(s) {
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    return h ? h + "h " + pad(m) + "m " + pad(sec) + "s" : m + "m " + pad(sec) + "s";
  }

  // Deadlines count down once a second (not a live region: a screen reader reads them on demand).
  function tick() {
    var now = Date.now();
    var els = document.querySelectorAll("[data-deadline]");
    for (var i = 0; i < els.length; i++) {
      var el = els[i];
      var left = Math.floor((Date.parse(el.getAttribute("data-deadline")) - now) / 1000);
      if (isNaN(left)) continue;
      if (left <= 0) {
        el.textContent = el.getAttribute("data-expired") || data.msgExpired || "expired";
        el.classList.add("expired");
      } else {
        el.textContent = fmt(left);
        el.classList.toggle("soon", left < 3600);
      }
    }
  }
  tick();
  window.setInterval(tick, 1000);

  // Never replace a part of the page someone is typing in or has opened; catch up when they leave it.
  var deferred = {};
  function busy(target) {
    var a = document.activeElement;
    if (a && target.contains(a) && /^(INPUT|TEXTAREA|SELECT)$/.test(a.tagName)) return true;
    return target.querySelector("details[open]") !== null;
  }
  function toLogin() { window.location.href = "/app/login?expired=1&next=" + encodeURIComponent(location.pathname); }

  function refresh(src, targetId, done) {
    var target = document.getElementById(targetId);
    if (!target) return;
    if (busy(target)) { deferred[targetId] = [src, done]; return; }
    delete deferred[targetId];
    fetch(src, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) {
        if (r.status === 401 || (r.redirected && r.url.indexOf("/app/login") !== -1)) { toLogin(); return null; }
        return r.ok ? r.text() : null;
      })
      .then(function (html) {
        if (typeof html !== "string") return;
        target.innerHTML = html;  // our own server-rendered, escaped fragment
        tick();
        if (done) done();
      })
      .catch(function () { /* offline for a moment: the next event or poll tries again */ });
  }
  function retryDeferred() {
    Object.keys(deferred).forEach(function (id) {
      var job = deferred[id];
      refresh(job[0], id, job[1]);
    });
  }
  document.addEventListener("focusout", function () { window.setTimeout(retryDeferred, 200); });
  document.addEventListener("toggle", function () { window.setTimeout(retryDeferred, 200); }, true);

  // Live inbox: the notification stream, authenticated by the session cookie.
  if (data.liveSrc && window.EventSource) {
    var status = document.getElementById("live-status");
    var setLive = function (on) {
      if (!status) return;
      status.setAttribute("data-state", on ? "on" : "off");
      status.textContent = on ? data.msgLiveOn : data.msgLiveOff;
    };
    var source = new EventSource(data.liveSrc);
    source.addEventListener("open", function () { setLive(true); });
    var onEvent = function (e) {
      var message = { offer: data.msgNew, offer_cancelled: data.msgGone, referral_withdrawn: data.msgWithdrawn }[e.type];
      refresh(data.liveFragment, data.liveTarget, function () { if (message) announce(message); });
    };
    ["offer", "offer_reminder", "offer_expired", "offer_cancelled", "referral_withdrawn", "followup_due", "protocol_overdue",
     "unroutable", "status_changed", "message"].forEach(function (kind) { source.addEventListener(kind, onEvent); });
    source.addEventListener("error", function () {
      setLive(false);
      // The browser reconnects by itself (resuming with Last-Event-ID); if the session ended, sign in.
      fetch("/app/session", { credentials: "same-origin" }).then(function (r) {
        if (r.status === 401 || (r.redirected && r.url.indexOf("/app/login") !== -1)) { source.close(); toLogin(); }
      }).catch(function () {});
    });
  }

  // Dashboard: refresh its panels every few seconds while the tab is visible.
  if (data.refreshSrc) {
    var every = Math.max(2, parseInt(data.refreshEvery || "10", 10)) * 1000;
    window.setInterval(function () {
      if (!document.hidden) refresh(data.refreshSrc, data.refreshTarget);
    }, every);
  }

  // Destructive forms ask first.
  document.addEventListener("submit", function (e) {
    var message = e.target.getAttribute && e.target.getAttribute("data-confirm");
    if (message && !window.confirm(message)) e.preventDefault();
  });
})();
