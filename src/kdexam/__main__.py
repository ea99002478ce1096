from kdexam.cli import main

main()
