// The sign-in waiting page: a countdown, and a long-poll that sends the "Lanjutkan" form by
// itself once the device has answered (or the time is over). Without JavaScript the page still
// works: the operator presses "Lanjutkan" after answering on the device.
(function () {
  var box = document.getElementById('wait');
  if (!box) { return; }
  var left = parseInt(box.dataset.seconds, 10) || 0;
  var shown = document.getElementById('countdown');
  var started = Date.now();
  var form = document.getElementById('continue');
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
        if (answer.done) { form.submit(); } else { poll(); }
      })
      .catch(function () { window.setTimeout(poll, 2000); });
  }
  poll();
})();
