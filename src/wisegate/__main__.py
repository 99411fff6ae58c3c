from wisegate.cli import main

main()
