from peft_studio.cli import main_entry

main_entry()
