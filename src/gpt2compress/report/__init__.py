"""Everything a run becomes after it is measured: the pages and charts of one run, the gate against another run
or the saved history, and the history itself."""
