from protalign.cli import main

raise SystemExit(main())
