from schemasaga.cli import main

main()
