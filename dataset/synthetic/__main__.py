from dataset.synthetic.cli import main

main()
