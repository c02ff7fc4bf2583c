// The waiting pages (activation and acceptor): a countdown, and a long-poll that moves on by
// itself once the service says the login is decided. Without JavaScript the pages still work:
// the "Lanjutkan" button asks the same question.
(function () {
  var box = document.getElementById('wait');
  if (!box) { return; }
  var left = parseInt(box.dataset.seconds, 10) || 0;
  var shown = document.getElementById('countdown');
  var started = Date.now();
  function pad(n) { return n < 10 ? '0' + n : '' + n; }
  function tick() {
    var s = Math.max(0, left - Math.floor((Date.now() - started) / 1000));
    shown.textContent = pad(Math.floor(s / 60)) + ':' + pad(s % 60);
  }
  tick();
  window.setInterval(tick, 1000);
  function poll() {
    fetch(box.dataset.wait, { credentials: 'same-origin', cache: 'no-store' })
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
      .then(function (answer) {
        if (answer.done) { window.location.replace(box.dataset.next); } else { poll(); }
      })
      .catch(function () { window.setTimeout(poll, 2000); });
  }
  poll();
})();
