from satellites._cli import main

main()
