from lie_ray.app.cli import main

main()
