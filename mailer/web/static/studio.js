// The studio's one script: keep the audience count of the send form up to date.
// The form works without it (its "Count" button posts the form and the page
// comes back with the count); this only saves the organizer that click.
(function () {
  "use strict";
  var form = document.getElementById("send-form");
  var output = document.getElementById("audience");
  if (!form || !output || !window.fetch) { return; }
  var timer = null;
  function update() {
    var params = new URLSearchParams();
    form.querySelectorAll('input[name="lists"]:checked').forEach(function (box) {
      params.append("lists", box.value);
    });
    params.append("segment", form.elements.segment.value);
    fetch("/admin/studio/count?" + params.toString(), { credentials: "same-origin" })
      .then(function (response) { return response.json(); })
      .then(function (data) {
        output.textContent = data.error ? data.error : data.count + " supporters";
      })
      .catch(function () { output.textContent = "press Count"; });
  }
  function soon() {
    if (timer) { clearTimeout(timer); }
    timer = setTimeout(update, 250);
  }
  form.addEventListener("change", soon);
  form.elements.segment.addEventListener("input", soon);
  update();
})();
