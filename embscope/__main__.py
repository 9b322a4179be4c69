from embscope.cli.main import main

main()
