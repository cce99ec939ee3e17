// Sorts a table.sortable by the column whose header button is pressed: by
// the cell's data-sort when it has one, else by its text; numbers as
// numbers. A table of several tbody elements (one per client) is sorted by
// tbody, on the cells of each one's first row.
(function () {
  "use strict";
  var tables = document.querySelectorAll("table.sortable");
  Array.prototype.forEach.call(tables, function (table) {
    var heads = table.tHead.rows[0].cells;
    var grouped = table.tBodies.length > 1;
    Array.prototype.forEach.call(heads, function (th, col) {
      var button = th.querySelector("button");
      if (!button) {
        return;
      }
      button.addEventListener("click", function () {
        var up = th.getAttribute("aria-sort") !== "ascending";
        Array.prototype.forEach.call(heads, function (h) {
          h.removeAttribute("aria-sort");
        });
        th.setAttribute("aria-sort", up ? "ascending" : "descending");
        var numeric = th.getAttribute("data-type") === "num";
        var parent = grouped ? table : table.tBodies[0];
        var units = Array.prototype.slice.call(grouped ? table.tBodies : parent.rows);
        var key = function (unit) {
          var cell = (grouped ? unit.rows[0] : unit).cells[col];
          var k = cell.hasAttribute("data-sort") ? cell.getAttribute("data-sort") : cell.textContent.trim();
          return numeric ? parseFloat(k) || 0 : k;
        };
        units.sort(function (a, b) {
          var x = key(a), y = key(b);
          var c = numeric ? x - y : x < y ? -1 : x > y ? 1 : 0;
          return up ? c : -c;
        });
        units.forEach(function (unit) {
          parent.appendChild(unit);
        });
      });
    });
  });
  document.documentElement.classList.add("js");
})();
