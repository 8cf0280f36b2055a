from lie_ray.cli import main

main()
