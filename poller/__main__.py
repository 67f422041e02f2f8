if __name__ == "__main__":
    # Only as a program: importing this module (a tool walking the package) starts nothing.
    from poller.cli import main

    raise SystemExit(main())
