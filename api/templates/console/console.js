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
  // Once a form is sent by hand (a typed code), the poll must not send another over it.
  var sent = false;
  Array.prototype.forEach.call(document.forms, function (f) {
    f.addEventListener('submit', function () { sent = true; });
  });
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
        if (sent) { return; }
        if (answer.done) { sent = true; form.submit(); } else { poll(); }
      })
      .catch(function () { if (!sent) { window.setTimeout(poll, 2000); } });
  }
  poll();
})();
