"""``adamem bench``: an honest benchmark of AM momentum against tuned fixed momentum.

Modules, one idea each:

* :mod:`.tasks`: the tasks and their sizes per suite; :mod:`.data`, :mod:`.convex`,
  :mod:`.classification`, :mod:`.language`, :mod:`.models`, :mod:`.gpt` build them;
* :mod:`.methods` and :mod:`.heavy_ball`: the optimizers compared;
* :mod:`.plan`: the runs and their keys (in the tuned suites, the runs at each method's chosen
  learning rate once its tuning runs are recorded); :mod:`.runner`: one run;
  :mod:`.executor`: many, in worker processes; :mod:`.store`: the JSONL results file;
* :mod:`.analysis`, :mod:`.plots`, :mod:`.report`: from records to the Markdown report and
  its summary (also on their own: ``adamem report``);
* :mod:`.benchmark`: all of it, as called by ``adamem bench`` (:mod:`adamem.cli`).

The optional dependencies (scikit-learn, mnist1d, matplotlib, tqdm: the ``bench`` extra) are
imported only where used.
"""
