document.querySelectorAll('table.sortable').forEach(function (table) {
  table.querySelectorAll('th').forEach(function (header, column) {
    header.classList.add('sortable');
    header.tabIndex = 0;  // reachable with Tab, sorted with Enter or Space as with a click
    function sort() {
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      var ascending = header.getAttribute('data-order') !== 'ascending';
      rows.sort(function (a, b) {
        var x = a.cells[column].getAttribute('data-value') || a.cells[column].textContent;
        var y = b.cells[column].getAttribute('data-value') || b.cells[column].textContent;
        var nx = parseFloat(x), ny = parseFloat(y);
        var order = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
        return ascending ? order : -order;
      });
      rows.forEach(function (row) { body.appendChild(row); });
      header.setAttribute('data-order', ascending ? 'ascending' : 'descending');
      header.setAttribute('aria-sort', ascending ? 'ascending' : 'descending');
    }
    header.addEventListener('click', sort);
    header.addEventListener('keydown', function (event) {
      if (event.key === 'Enter' || event.key === ' ') { event.preventDefault(); sort(); }
    });
  });
});
