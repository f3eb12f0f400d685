import sys

from peft_studio.cli import main

sys.exit(main())
