from ffrtmp.cli import main

main()
