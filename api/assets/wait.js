// Every waiting page (the reference portal's activation and acceptor pages, the console's
// sign-in on a device): a countdown, and a long-poll that moves on by itself once the service
// says the wait is over: to the page's `data-next` where it names one, else by sending its
// "Lanjutkan" form (#continue). Without JavaScript the pages still work: "Lanjutkan" asks the
// same question.
(function () {
  var box = document.getElementById('wait');
  if (!box) { return; }
  var left = parseInt(box.dataset.seconds, 10) || 0;
  var shown = document.getElementById('countdown');
  var started = Date.now();
  // Once a form is sent by hand (a typed code, "Lanjutkan"), the poll must not send another.
  var sent = false;
  Array.prototype.forEach.call(document.forms, function (f) {
    f.addEventListener('submit', function () { sent = true; });
  });
  function moveOn() {
    sent = true;
    if (box.dataset.next) {
      window.location.replace(box.dataset.next);
    } else {
      document.getElementById('continue').submit();
    }
  }
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
        if (answer.done) { moveOn(); } else { poll(); }
      })
      .catch(function () { if (!sent) { window.setTimeout(poll, 2000); } });
  }
  poll();
})();
