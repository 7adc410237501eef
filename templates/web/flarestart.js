// FlareStart's one script: the sign-up form works without it; with it, the time zone is guessed
// from the browser (the field stays editable) and the topics can be filtered by a search box.
(function () {
  "use strict";
  var form = document.getElementById("signup");
  if (!form) { return; }
  var zone = document.getElementById("timezone");
  try {
    var guessed = Intl.DateTimeFormat().resolvedOptions().timeZone;
    if (zone && guessed && (zone.value === "" || zone.value === "UTC") && !zone.dataset.touched) {
      zone.value = guessed;
    }
  } catch (e) { /* an old browser: the field keeps its value */ }
  if (zone) { zone.addEventListener("input", function () { zone.dataset.touched = "1"; }); }
  var search = document.getElementById("topic-search");
  if (!search) { return; }
  search.parentElement.hidden = false;
  var chips = form.querySelectorAll(".chip");
  var groups = form.querySelectorAll("fieldset.group");
  search.addEventListener("input", function () {
    var words = search.value.trim().toLowerCase();
    chips.forEach(function (chip) {
      var match = !words || chip.textContent.toLowerCase().indexOf(words) !== -1;
      chip.hidden = !match && !chip.querySelector("input").checked;
    });
    groups.forEach(function (group) {
      group.hidden = group.querySelectorAll(".chip:not([hidden])").length === 0;
    });
  });
})();
