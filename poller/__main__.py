if __name__ == "__main__":
    # Spawned worker processes import this module as __mp_main__: they need none of the CLI.
    from poller.cli import main

    raise SystemExit(main())
