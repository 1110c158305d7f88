#!/usr/bin/env python3
"""The docker action's entry point (action.yml runs this): everything happens in verifily_action.action."""

import sys

from verifily_action.action import main

if __name__ == "__main__":
    sys.exit(main())
